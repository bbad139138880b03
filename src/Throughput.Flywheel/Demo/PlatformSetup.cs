using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Serving;

namespace Throughput.Flywheel.Demo;

/// <summary>A customer as set up on the platform: its tenant's client and its deployment.</summary>
public sealed record Provisioned(Customer Customer, string TenantId, HttpClient Tenant, string DeploymentId, string ApiKey);

/// <summary>The platform calls the demo makes, as an operator and as each customer would.</summary>
public static class PlatformSetup
{
    /// <summary>Makes sure the pool has room for the run: its capacity grows to what is sold plus what the run needs, never shrinks.</summary>
    public static async Task EnsurePoolAsync(HttpClient op, string model, string region, decimal needed, CancellationToken ct)
    {
        var (capacity, sold) = await PoolAsync(op, model, region, ct);
        if (capacity - sold >= needed) return;
        await Ok(op.PutAsJsonAsync($"/v1/operator/pools/{model}/{region}", new { capacityPtu = sold + needed }, ct));
    }

    /// <summary>Sets the pool's capacity to what it holds plus <paramref name="free"/> PTUs (opening it if need be).</summary>
    public static async Task SetFreeAsync(HttpClient op, string model, string region, decimal free, CancellationToken ct)
    {
        var (_, sold) = await PoolAsync(op, model, region, ct);
        await Ok(op.PutAsJsonAsync($"/v1/operator/pools/{model}/{region}", new { capacityPtu = sold + free }, ct));
    }

    /// <summary>Records what one GPU of the kind serves of the model, as the calibration measured it.</summary>
    public static async Task RecordCalibrationAsync(HttpClient op, Capacity.CalibrationResult calibration, Batching.FleetOptions fleet, CancellationToken ct) =>
        await Ok(op.PutAsJsonAsync($"/v1/operator/gpu-calibrations/{calibration.GpuKind}/{calibration.Model}", new
        {
            ptuPerGpu = calibration.SellablePtu,
            weightedTokensPerMinute = (long)calibration.WeightedPerMinute,
            scheduler = fleet.Scheduling.ToString(),
            tokenBudget = fleet.TokenBudget,
        }, ct));

    /// <summary>
    /// Makes sure the pool has room for the run, stated as GPUs of the calibrated kind: as many as what is sold and what the
    /// run needs take, never fewer than it has.
    /// </summary>
    public static async Task<int> EnsureGpusAsync(HttpClient op, string model, string region, Capacity.CalibrationResult calibration, decimal needed, CancellationToken ct)
    {
        var (capacity, sold) = await PoolAsync(op, model, region, ct);
        var gpus = (int)Math.Ceiling(Math.Max(capacity, sold + needed) / calibration.SellablePtu);
        await Ok(op.PutAsJsonAsync($"/v1/operator/pools/{model}/{region}", new { gpus, gpuKind = calibration.GpuKind }, ct));
        return gpus;
    }

    /// <summary>The model's pricing units from the platform's catalog.</summary>
    public static async Task<Capacity.ModelRates> ModelRatesAsync(HttpClient client, string model, CancellationToken ct)
    {
        var models = await client.GetFromJsonAsync<JsonElement>("/v1/models", ct);
        foreach (var entry in models.EnumerateArray())
        {
            if (entry.GetProperty("name").GetString() != model) continue;
            return new Capacity.ModelRates(entry.GetProperty("inputTokensPerMinutePerPtu").GetDouble(), entry.GetProperty("outputWeight").GetDouble(), entry.GetProperty("cachedDeduction").GetDouble());
        }
        throw new InvalidOperationException($"The platform's catalog has no model '{model}'.");
    }

    /// <summary>The pool's capacity and what it has sold, in PTUs; zero for a pool not opened yet.</summary>
    static async Task<(decimal Capacity, decimal Sold)> PoolAsync(HttpClient op, string model, string region, CancellationToken ct)
    {
        var pools = await op.GetFromJsonAsync<JsonElement>("/v1/operator/pools", ct);
        foreach (var pool in pools.EnumerateArray())
        {
            if (pool.GetProperty("model").GetString() == model && pool.GetProperty("region").GetString() == region)
                return (pool.GetProperty("capacityPtu").GetDecimal(), pool.GetProperty("soldPtu").GetDecimal());
        }
        return (0, 0);
    }

    /// <summary>Registers the serving node's producer id for the region and issues it its own broker credentials and a ServingNode key.</summary>
    public static async Task<ServingNodeAccess> RegisterServingNodeAsync(HttpClient op, string producerId, string region, CancellationToken ct)
    {
        await Ok(op.PutAsJsonAsync($"/v1/operator/serving-nodes/{producerId}", new { regions = new[] { region }, tenants = Array.Empty<string>() }, ct));
        var credentials = await Ok(op.PostAsync(new Uri($"/v1/operator/serving-nodes/{producerId}/credentials", UriKind.Relative), null, ct));
        var issued = await Ok(op.PostAsJsonAsync("/v1/operator/keys", new { role = "ServingNode", name = producerId }, ct));
        return new ServingNodeAccess(issued.GetProperty("apiKey").GetString()!, credentials.GetProperty("brokerUser").GetString()!, credentials.GetProperty("brokerPassword").GetString()!);
    }

    /// <summary>A tenant for the customer, its key, and the deployment it buys with that key.</summary>
    public static async Task<Provisioned> ProvisionAsync(HttpClient op, Func<string, HttpClient> clientFor, Customer customer, Scenario scenario, string run, CancellationToken ct)
    {
        var (tenantId, apiKey, tenant) = await TenantAsync(op, clientFor, customer, run, ct);
        var deployment = await Ok(tenant.PostAsJsonAsync("/v1/deployments",
            new { name = customer.Workload.Name.Replace(' ', '-'), model = scenario.Model, region = scenario.Region, type = "Global", ptu = customer.Ptu }, ct));
        return new Provisioned(customer, tenantId, tenant, deployment.GetProperty("id").GetString()!, apiKey);
    }

    /// <summary>
    /// A tenant for the customer that registers <paramref name="adapters"/> (rank 16, 27 MB: the batcher's adapter shape) and
    /// buys one adapter set of all of them, as a customer does through the API.
    /// </summary>
    public static async Task<Provisioned> ProvisionAdapterSetAsync(
        HttpClient op, Func<string, HttpClient> clientFor, Customer customer, IReadOnlyList<string> adapters, string model, string region, string run, CancellationToken ct)
    {
        var (tenantId, apiKey, tenant) = await TenantAsync(op, clientFor, customer, run, ct);
        foreach (var batch in adapters.Chunk(1000))
            await Ok(tenant.PostAsJsonAsync("/v1/adapters/batch", new { adapters = batch.Select(id => new { id, baseModel = model, rank = 16, sizeMb = 27.3m }) }, ct));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/adapter-sets")
        {
            Content = JsonContent.Create(new { name = "fine-tunes", model, region, type = "Global", ptu = customer.Ptu, adapters = adapters.Select(id => new { adapterId = id }) }),
        };
        request.Headers.Add("Idempotency-Key", $"set-{run}");
        var set = await Ok(tenant.SendAsync(request, ct));
        return new Provisioned(customer, tenantId, tenant, set.GetProperty("id").GetString()!, apiKey);
    }

    static async Task<(string TenantId, string ApiKey, HttpClient Client)> TenantAsync(HttpClient op, Func<string, HttpClient> clientFor, Customer customer, string run, CancellationToken ct)
    {
        var tenantId = customer.TenantId(run);
        await Ok(op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = customer.Name, currency = "USD" }, ct));
        var key = await Ok(op.PostAsync(new Uri($"/v1/operator/tenants/{tenantId}/keys", UriKind.Relative), null, ct));
        var apiKey = key.GetProperty("apiKey").GetString()!;
        return (tenantId, apiKey, clientFor(apiKey));
    }

    /// <summary>The platform's usage of each adapter of the deployment this month.</summary>
    public static Task<JsonElement> AdapterUsageAsync(Provisioned customer, string month, CancellationToken ct) =>
        customer.Tenant.GetFromJsonAsync<JsonElement>($"/v1/deployments/{customer.DeploymentId}/usage/adapters?month={month}", ct);

    /// <summary>A finance key, for the dashboard's finance pages.</summary>
    public static async Task<string> FinanceKeyAsync(HttpClient op, string name, CancellationToken ct) =>
        (await Ok(op.PostAsJsonAsync("/v1/operator/keys", new { role = "Finance", name }, ct))).GetProperty("apiKey").GetString()!;

    /// <summary>Resizes as a customer does: reads the deployment for its ETag, then posts the resize with If-Match.</summary>
    public static Task ResizeAsync(Provisioned customer, decimal ptu, CancellationToken ct) =>
        WithIfMatchAsync(customer, $"/v1/deployments/{customer.DeploymentId}/resize", new { ptu }, ct);

    /// <summary>Gives the PTUs back, so repeated runs do not fill the pool.</summary>
    public static Task ReleaseAsync(Provisioned customer, CancellationToken ct) =>
        WithIfMatchAsync(customer, $"/v1/deployments/{customer.DeploymentId}/release", null, ct);

    /// <summary>
    /// Reads the ETag and posts with If-Match, again on 412 (another client changed the deployment in between), as a
    /// careful client does. Metering does not move the ETag: it is the revision of the customer's own changes.
    /// </summary>
    static async Task WithIfMatchAsync(Provisioned customer, string path, object? body, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var etag = await ETagAsync(customer, ct);
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = body is null ? null : JsonContent.Create(body) };
            request.Headers.IfMatch.Add(etag);
            using var response = await customer.Tenant.SendAsync(request, ct);
            if (response.StatusCode == System.Net.HttpStatusCode.PreconditionFailed && attempt < 3) continue;
            await Ensure(response);
            return;
        }
    }

    /// <summary>The platform's usage totals of the deployment.</summary>
    public static Task<JsonElement> TotalsAsync(Provisioned customer, CancellationToken ct) =>
        customer.Tenant.GetFromJsonAsync<JsonElement>($"/v1/deployments/{customer.DeploymentId}/usage/totals", ct);

    static async Task<EntityTagHeaderValue> ETagAsync(Provisioned customer, CancellationToken ct)
    {
        using var response = await customer.Tenant.GetAsync(new Uri($"/v1/deployments/{customer.DeploymentId}", UriKind.Relative), ct);
        await Ensure(response);
        return response.Headers.ETag ?? throw new InvalidOperationException("The deployment came without an ETag.");
    }

    static async Task<JsonElement> Ok(Task<HttpResponseMessage> call)
    {
        using var response = await call;
        await Ensure(response);
        return response.Content.Headers.ContentLength == 0 ? default : await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    static async Task Ensure(HttpResponseMessage response)
    {
        if (response.IsSuccessStatusCode) return;
        var body = await response.Content.ReadAsStringAsync();
        throw new HttpRequestException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri} answered {(int)response.StatusCode}: {body}", null, response.StatusCode);
    }
}

/// <summary>What a registered serving node holds: its API key and its own broker user.</summary>
public sealed record ServingNodeAccess(string ApiKey, string BrokerUser, string BrokerPassword)
{
    /// <summary>The platform's broker address (host, port, vhost) with this node's credentials instead of any in it.</summary>
    public Uri Broker(Uri platformBroker) =>
        new UriBuilder(platformBroker) { UserName = Uri.EscapeDataString(BrokerUser), Password = Uri.EscapeDataString(BrokerPassword) }.Uri;
}
