using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Http;
using Marten;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Throughput.Access;

namespace Throughput.IntegrationTests;

/// <summary>A customer's story through the real host on real PostgreSQL: buy, read, resize, release, reserve.</summary>
[Collection(PlatformCollection.Name)]
public sealed class CustomerApiTests(PlatformFixture platform)
{
    static object Purchase(string region, decimal ptu, string name = "docs") => new { name, model = "gpt-4o", region, type = "Global", ptu };

    static async Task<JsonElement> Body(HttpResponseMessage response) => await response.Content.ReadFromJsonAsync<JsonElement>();

    static HttpRequestMessage WithIfMatch(HttpMethod method, string url, string? etag, object? body = null)
    {
        var request = new HttpRequestMessage(method, url) { Content = body is null ? null : JsonContent.Create(body) };
        if (etag is not null) request.Headers.IfMatch.Add(EntityTagHeaderValue.Parse(etag));
        return request;
    }

    [Fact]
    public async Task A_new_tenants_draft_answers_at_once_before_the_read_models_reach_it()
    {
        var (tenantId, customer) = await platform.NewTenantAsync("EUR");

        var draft = await customer.GetAsync("/v1/invoices/draft");

        Assert.Equal(HttpStatusCode.OK, draft.StatusCode);
        var body = await Body(draft);
        Assert.Equal((tenantId, "EUR", 0m), (body.GetProperty("tenantId").GetString(), body.GetProperty("currency").GetString(), body.GetProperty("total").GetDecimal()));
        Assert.Empty(body.GetProperty("lines").EnumerateArray());
    }

    [Fact]
    public async Task A_customer_buys_a_fractional_deployment_and_reads_its_admission_limit()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);

        var created = await customer.PostAsJsonAsync("/v1/deployments", Purchase(region, 0.5m));

        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await Body(created)).GetProperty("id").GetString()!;
        var read = await customer.GetAsync($"/v1/deployments/{id}");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        Assert.Equal("\"1\"", read.Headers.ETag!.Tag);
        var deployment = await Body(read);
        Assert.Equal(0.5m, deployment.GetProperty("ptu").GetDecimal());
        Assert.Equal(1250, deployment.GetProperty("admission").GetProperty("tokensPerMinute").GetInt64()); // 0.5 × 2,500
        Assert.Equal(1250, deployment.GetProperty("admission").GetProperty("burstTokens").GetInt64());
        var listed = await Body(await customer.GetAsync("/v1/deployments"));
        Assert.Equal([id], listed.EnumerateArray().Select(d => d.GetProperty("id").GetString()));
        var pools = await Body(await platform.Operator().GetAsync("/v1/operator/pools"));
        var pool = pools.EnumerateArray().Single(p => p.GetProperty("region").GetString() == region);
        Assert.Equal(0.5m, pool.GetProperty("soldPtu").GetDecimal());
        Assert.Equal(9.5m, pool.GetProperty("freePtu").GetDecimal());
    }

    [Fact]
    public async Task Resize_and_release_require_the_current_ETag_and_move_the_pool()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var id = (await Body(await customer.PostAsJsonAsync("/v1/deployments", Purchase(region, 1)))).GetProperty("id").GetString()!;

        var missing = await customer.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/resize", null, new { ptu = 2 }));
        Assert.Equal((HttpStatusCode)428, missing.StatusCode);
        var stale = await customer.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/resize", "\"7\"", new { ptu = 2 }));
        Assert.Equal(HttpStatusCode.PreconditionFailed, stale.StatusCode);
        Assert.Equal("application/problem+json", stale.Content.Headers.ContentType!.MediaType);
        Assert.Equal(ProblemTypes.PreconditionFailed.Uri, (await Body(stale)).GetProperty("type").GetString());
        Assert.Equal(ProblemTypes.PreconditionRequired.Uri, (await Body(missing)).GetProperty("type").GetString());

        var resized = await customer.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/resize", "\"1\"", new { ptu = 2.5m }));
        Assert.Equal(HttpStatusCode.OK, resized.StatusCode);
        Assert.Equal("\"2\"", resized.Headers.ETag!.Tag);
        Assert.Equal(6250, (await Body(resized)).GetProperty("admission").GetProperty("tokensPerMinute").GetInt64());

        var reusedEtag = await customer.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/release", "\"1\""));
        Assert.Equal(HttpStatusCode.PreconditionFailed, reusedEtag.StatusCode);
        var released = await customer.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/release", "\"2\""));
        Assert.Equal(HttpStatusCode.OK, released.StatusCode);
        var releasedView = await Body(released);
        Assert.Equal("Released", releasedView.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.String, releasedView.GetProperty("releasedAt").ValueKind);

        var resizeReleased = await customer.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/resize", "\"3\"", new { ptu = 1 }));
        Assert.Equal(HttpStatusCode.Conflict, resizeReleased.StatusCode);
        Assert.Contains("released", (await Body(resizeReleased)).GetProperty("detail").GetString());

        var pool = (await Body(await platform.Operator().GetAsync("/v1/operator/pools"))).EnumerateArray().Single(p => p.GetProperty("region").GetString() == region);
        Assert.Equal(0m, pool.GetProperty("soldPtu").GetDecimal());
    }

    [Fact]
    public async Task Fifty_parallel_purchases_fill_the_pool_exactly_and_the_rest_get_409()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 12.5m);

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => customer.PostAsJsonAsync("/v1/deployments", Purchase(region, 0.5m, $"d{i}"))));

        Assert.Equal(25, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        var refused = responses.Where(r => r.StatusCode != HttpStatusCode.Created).ToList();
        Assert.Equal(25, refused.Count);
        foreach (var r in refused)
        {
            Assert.Equal(HttpStatusCode.Conflict, r.StatusCode);
            Assert.Contains("exhausted", (await Body(r)).GetProperty("detail").GetString());
        }
        var pool = (await Body(await platform.Operator().GetAsync("/v1/operator/pools"))).EnumerateArray().Single(p => p.GetProperty("region").GetString() == region);
        Assert.Equal(12.5m, pool.GetProperty("soldPtu").GetDecimal());
        Assert.Equal(0m, pool.GetProperty("freePtu").GetDecimal());
        Assert.Equal(25, (await Body(await customer.GetAsync("/v1/deployments"))).GetArrayLength());
    }

    [Fact]
    public async Task A_retried_purchase_with_the_same_Idempotency_Key_buys_once()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        HttpRequestMessage Post(decimal ptu)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/deployments") { Content = JsonContent.Create(Purchase(region, ptu)) };
            request.Headers.Add("Idempotency-Key", "purchase-42");
            return request;
        }

        var attempts = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => customer.SendAsync(Post(2))));
        var again = await customer.SendAsync(Post(2));
        var different = await customer.SendAsync(Post(3));

        Assert.All(attempts.Append(again), r => Assert.Equal(HttpStatusCode.Created, r.StatusCode));
        Assert.Single((await Task.WhenAll(attempts.Append(again).Select(async r => (await Body(r)).GetProperty("id").GetString()))).Distinct());
        Assert.Equal(1, (await Body(await customer.GetAsync("/v1/deployments"))).GetArrayLength());
        Assert.Equal((HttpStatusCode)422, different.StatusCode);
        Assert.Equal(ProblemTypes.IdempotencyKeyReused.Uri, (await Body(different)).GetProperty("type").GetString());
        var pool = (await Body(await platform.Operator().GetAsync("/v1/operator/pools"))).EnumerateArray().Single(p => p.GetProperty("region").GetString() == region);
        Assert.Equal(2m, pool.GetProperty("soldPtu").GetDecimal());
    }

    [Fact]
    public async Task Bad_requests_get_problem_details_naming_the_field()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);

        var invalid = await customer.PostAsJsonAsync("/v1/deployments", new { name = "", model = "no-such-model", region = "Bad Region!", type = "Global", ptu = -1 });
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Equal("application/problem+json", invalid.Content.Headers.ContentType!.MediaType);
        var errors = (await Body(invalid)).GetProperty("errors");
        foreach (var field in new[] { "name", "model", "region", "ptu" }) Assert.True(errors.TryGetProperty(field, out _), field);

        var wrongType = await customer.PostAsync("/v1/deployments", new StringContent("""{"name":"x","model":"gpt-4o","region":"eastus","type":"Global","ptu":"lots"}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, wrongType.StatusCode);
        Assert.True((await Body(wrongType)).GetProperty("errors").TryGetProperty("ptu", out _));

        var brokenJson = await customer.PostAsync("/v1/deployments", new StringContent("{\"name\":", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, brokenJson.StatusCode);
        Assert.Equal("application/problem+json", brokenJson.Content.Headers.ContentType!.MediaType);

        var belowIncrement = await customer.PostAsJsonAsync("/v1/deployments", Purchase(region, 0.25m));
        Assert.Equal((HttpStatusCode)422, belowIncrement.StatusCode);
        Assert.Contains("minimum is 0.1 PTU in steps of 0.1", (await Body(belowIncrement)).GetProperty("detail").GetString());

        var noPool = await customer.PostAsJsonAsync("/v1/deployments", Purchase("nowhere", 1));
        Assert.Equal(HttpStatusCode.Conflict, noPool.StatusCode);
    }

    [Fact]
    public async Task Every_call_is_authenticated_and_roles_are_separate()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var anonymous = platform.Client(null);
        var forged = platform.Client("tpk_kitoperator.not-the-secret");
        var malformed = platform.Client("hello");

        foreach (var client in new[] { anonymous, forged, malformed })
        {
            var response = await client.GetAsync("/v1/deployments");
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await customer.GetAsync("/v1/operator/tenants")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await platform.Operator().GetAsync("/v1/deployments")).StatusCode);

        var finance = await IssueStaffKey("Finance");
        Assert.Equal(HttpStatusCode.Forbidden, (await platform.Client(finance).GetAsync("/v1/operator/pools")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await platform.Client(finance).GetAsync("/v1/deployments")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await platform.Client(finance).GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task A_revoked_key_stops_working()
    {
        var key = await IssueStaffKey("Operator");
        var client = platform.Client(key);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/operator/pools")).StatusCode);
        var keyId = key["tpk_".Length..key.IndexOf('.', StringComparison.Ordinal)];

        Assert.Equal(HttpStatusCode.NoContent, (await platform.Operator().DeleteAsync($"/v1/operator/keys/{keyId}")).StatusCode);

        await Eventually.Until(async () => (await client.GetAsync("/v1/operator/pools")).StatusCode, s => s == HttpStatusCode.Unauthorized, TimeSpan.FromSeconds(15));
    }

    [Fact]
    public async Task Hosts_starting_together_with_bootstrap_keys_of_their_own_register_every_key()
    {
        // Each key's append to the one staff stream races the others'; a loser used to give up, as if its key were registered.
        var store = platform.Services.GetRequiredService<IDocumentStore>();
        var keys = Enumerable.Range(0, 4).Select(_ => $"tpk_kboot{Guid.NewGuid():N}"[..20] + "." + Guid.NewGuid().ToString("N")).ToList();
        var hosts = keys.Select(key => new BootstrapOperatorKey(
            new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Access:BootstrapOperatorKey"] = key }).Build(),
            store, TimeProvider.System, NullLogger<BootstrapOperatorKey>.Instance));

        await Task.WhenAll(hosts.Select(h => h.StartAsync(CancellationToken.None)));

        foreach (var key in keys)
            Assert.Equal(HttpStatusCode.OK, (await platform.Client(key).GetAsync("/v1/operator/pools")).StatusCode);
    }

    [Fact]
    public async Task A_tenant_sees_and_changes_only_its_own_deployments()
    {
        var (_, alice) = await platform.NewTenantAsync();
        var (_, bob) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var id = (await Body(await alice.PostAsJsonAsync("/v1/deployments", Purchase(region, 1)))).GetProperty("id").GetString()!;

        Assert.Equal(HttpStatusCode.NotFound, (await bob.GetAsync($"/v1/deployments/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await bob.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/resize", "\"1\"", new { ptu = 2 }))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await bob.SendAsync(WithIfMatch(HttpMethod.Post, $"/v1/deployments/{id}/release", "\"1\""))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await bob.PutAsJsonAsync($"/v1/deployments/{id}/spillover", new { enabled = true })).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await bob.GetAsync($"/v1/deployments/{id}/usage/totals")).StatusCode);
        Assert.Equal(0, (await Body(await bob.GetAsync("/v1/deployments"))).GetArrayLength());
        Assert.Equal(HttpStatusCode.OK, (await alice.GetAsync($"/v1/deployments/{id}")).StatusCode);
    }

    [Fact]
    public async Task Spillover_can_be_switched_on_and_off()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var id = (await Body(await customer.PostAsJsonAsync("/v1/deployments", Purchase(region, 1)))).GetProperty("id").GetString()!;

        var on = await customer.PutAsJsonAsync($"/v1/deployments/{id}/spillover", new { enabled = true });
        var again = await customer.PutAsJsonAsync($"/v1/deployments/{id}/spillover", new { enabled = true });

        Assert.True((await Body(on)).GetProperty("spillover").GetBoolean());
        Assert.Equal("\"2\"", again.Headers.ETag!.Tag); // the repeat appended nothing
        Assert.False((await Body(await customer.PutAsJsonAsync($"/v1/deployments/{id}/spillover", new { enabled = false }))).GetProperty("spillover").GetBoolean());
    }

    [Fact]
    public async Task A_suspended_tenant_cannot_buy_until_reinstated()
    {
        var (tenantId, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var op = platform.Operator();

        Assert.Equal(HttpStatusCode.OK, (await op.PostAsJsonAsync($"/v1/operator/tenants/{tenantId}/suspend", new { reason = "unpaid invoices" })).StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await customer.PostAsJsonAsync("/v1/deployments", Purchase(region, 1))).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await op.PostAsJsonAsync($"/v1/operator/tenants/{tenantId}/suspend", new { reason = "" })).StatusCode);
        Assert.Equal("Active", (await Body(await op.PostAsync($"/v1/operator/tenants/{tenantId}/reinstate", null))).GetProperty("status").GetString());
        Assert.Equal(HttpStatusCode.Created, (await customer.PostAsJsonAsync("/v1/deployments", Purchase(region, 1))).StatusCode);
    }

    [Fact]
    public async Task Operators_manage_tenants_keys_and_pools()
    {
        var op = platform.Operator();
        var tenantId = "t-" + Guid.NewGuid().ToString("N")[..10];
        Assert.Equal(HttpStatusCode.Created, (await op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = "Initech", currency = "EUR" })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = "Initech", currency = "EUR" })).StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = "Other", currency = "EUR" })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId = "X", name = "x", currency = "XYZ" })).StatusCode);

        var keyed = new HttpRequestMessage(HttpMethod.Post, $"/v1/operator/tenants/{tenantId}/keys");
        keyed.Headers.Add("Idempotency-Key", "first-key");
        var issued = await op.SendAsync(keyed);
        Assert.Equal(HttpStatusCode.Created, issued.StatusCode);
        var retried = new HttpRequestMessage(HttpMethod.Post, $"/v1/operator/tenants/{tenantId}/keys");
        retried.Headers.Add("Idempotency-Key", "first-key");
        Assert.Equal(HttpStatusCode.Conflict, (await op.SendAsync(retried)).StatusCode);
        var keyId = (await Body(issued)).GetProperty("keyId").GetString();
        var tenant = await Body(await op.GetAsync($"/v1/operator/tenants/{tenantId}"));
        Assert.Equal([keyId], tenant.GetProperty("activeKeys").EnumerateArray().Select(k => k.GetString()));
        Assert.Equal(HttpStatusCode.NoContent, (await op.DeleteAsync($"/v1/operator/tenants/{tenantId}/keys/{keyId}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await op.DeleteAsync($"/v1/operator/tenants/{tenantId}/keys/{keyId}")).StatusCode);
        // The tenant list in linked pages holds every tenant once, in the order of the whole list as CSV.
        var listed = (await op.GetStringAsync("/v1/operator/tenants?format=csv")).Split("\r\n", StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(line => line.Split(',')[0]).ToList();
        List<string> paged = [];
        for (var next = $"/v1/operator/tenants?limit={Math.Max(1, listed.Count / 4)}"; next is not null;)
        {
            var response = await op.GetAsync(next);
            paged.AddRange((await Body(response)).EnumerateArray().Select(t => t.GetProperty("id").GetString()!));
            next = response.Headers.TryGetValues("Link", out var link) ? System.Text.RegularExpressions.Regex.Match(link.Single(), "^<(.+)>; rel=\"next\"$").Groups[1].Value : null;
        }
        Assert.Contains(tenantId, paged);
        Assert.Equal(listed, paged);

        var region = await platform.NewPoolAsync("gpt-4.1", 4);
        var (_, customer) = await platform.NewTenantAsync();
        Assert.Equal(HttpStatusCode.Created, (await customer.PostAsJsonAsync("/v1/deployments", new { name = "x", model = "gpt-4.1", region, type = "Global", ptu = 3 })).StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await op.PutAsJsonAsync($"/v1/operator/pools/gpt-4.1/{region}", new { capacityPtu = 2 })).StatusCode);
        var grown = await Body(await op.PutAsJsonAsync($"/v1/operator/pools/gpt-4.1/{region}", new { capacityPtu = 8 }));
        Assert.Equal(5m, grown.GetProperty("freePtu").GetDecimal());
        Assert.Equal(HttpStatusCode.BadRequest, (await op.PutAsJsonAsync($"/v1/operator/pools/nope/{region}", new { capacityPtu = 8 })).StatusCode);
    }

    [Fact]
    public async Task An_operator_states_a_pool_as_gpus_of_a_calibrated_kind_and_its_capacity_is_their_calibrated_ptus()
    {
        var op = platform.Operator();
        var kind = "gpu-" + Guid.NewGuid().ToString("N")[..8];
        var region = await platform.NewPoolAsync("gpt-4.1", 0);

        var uncalibrated = await op.PutAsJsonAsync($"/v1/operator/pools/gpt-4.1/{region}", new { gpus = 2, gpuKind = kind });
        Assert.Equal(HttpStatusCode.BadRequest, uncalibrated.StatusCode);
        Assert.True((await Body(uncalibrated)).GetProperty("errors").TryGetProperty("gpuKind", out _));
        var both = await op.PutAsJsonAsync($"/v1/operator/pools/gpt-4.1/{region}", new { capacityPtu = 5, gpus = 2, gpuKind = kind });
        Assert.Equal(HttpStatusCode.BadRequest, both.StatusCode);
        Assert.True((await Body(both)).GetProperty("errors").TryGetProperty("capacityPtu", out _));
        var badCalibration = await op.PutAsJsonAsync($"/v1/operator/gpu-calibrations/{kind}/gpt-4.1", new { ptuPerGpu = 0, weightedTokensPerMinute = 1, scheduler = "flywheel", tokenBudget = 512 });
        Assert.True((await Body(badCalibration)).GetProperty("errors").TryGetProperty("ptuPerGpu", out _));

        var calibrated = await Body(await op.PutAsJsonAsync($"/v1/operator/gpu-calibrations/{kind}/gpt-4.1", new { ptuPerGpu = 2.5m, weightedTokensPerMinute = 6_250, scheduler = "flywheel", tokenBudget = 512 }));
        Assert.Equal(2.5m, calibrated.GetProperty("ptuPerGpu").GetDecimal());
        var sized = await Body(await op.PutAsJsonAsync($"/v1/operator/pools/gpt-4.1/{region}", new { gpus = 3, gpuKind = kind }));
        Assert.Equal(7.5m, sized.GetProperty("capacityPtu").GetDecimal());
        Assert.Equal(3, sized.GetProperty("gpus").GetProperty("gpus").GetInt32());
        Assert.Equal(kind, sized.GetProperty("gpus").GetProperty("gpuKind").GetString());

        var (_, customer) = await platform.NewTenantAsync();
        Assert.Equal(HttpStatusCode.Created, (await customer.PostAsJsonAsync("/v1/deployments", new { name = "x", model = "gpt-4.1", region, type = "Global", ptu = 6 })).StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await op.PutAsJsonAsync($"/v1/operator/pools/gpt-4.1/{region}", new { gpus = 2, gpuKind = kind })).StatusCode); // 5 PTU < 6 sold
        var recalibrated = await op.PutAsJsonAsync($"/v1/operator/gpu-calibrations/{kind}/gpt-4.1", new { ptuPerGpu = 3m, weightedTokensPerMinute = 7_500, scheduler = "flywheel", tokenBudget = 512 });
        recalibrated.EnsureSuccessStatusCode();
        var resized = await Body(await op.PutAsJsonAsync($"/v1/operator/pools/gpt-4.1/{region}", new { gpus = 3, gpuKind = kind }));
        Assert.Equal(9m, resized.GetProperty("capacityPtu").GetDecimal()); // the same GPUs at the new calibration
        var listed = await Body(await op.GetAsync("/v1/operator/gpu-calibrations"));
        Assert.Contains(listed.EnumerateArray(), c => c.GetProperty("gpuKind").GetString() == kind && c.GetProperty("ptuPerGpu").GetDecimal() == 3m);
    }

    [Fact]
    public async Task Reservations_are_bought_listed_and_cannot_be_cancelled_early()
    {
        var (_, customer) = await platform.NewTenantAsync("EUR");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/reservations") { Content = JsonContent.Create(new { model = "gpt-4o", region = "westeurope", type = "DataZone", ptu = 5, term = "Year" }) };
        request.Headers.Add("Idempotency-Key", "res-1");
        var created = await customer.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var reservation = await Body(created);
        Assert.Equal("EUR", reservation.GetProperty("currency").GetString());
        Assert.Equal(2683.824m, reservation.GetProperty("pricePerPtu").GetDecimal()); // the year price of EUR 2,439.84 × the Data Zone factor 1.1
        var id = reservation.GetProperty("id").GetString()!;

        var retry = new HttpRequestMessage(HttpMethod.Post, "/v1/reservations") { Content = JsonContent.Create(new { model = "gpt-4o", region = "westeurope", type = "DataZone", ptu = 5, term = "Year" }) };
        retry.Headers.Add("Idempotency-Key", "res-1");
        Assert.Equal(id, (await Body(await customer.SendAsync(retry))).GetProperty("id").GetString());
        Assert.Equal(1, (await Body(await customer.GetAsync("/v1/reservations"))).GetArrayLength());

        var cancel = await customer.PostAsync($"/v1/reservations/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.Conflict, cancel.StatusCode);
        Assert.Contains("before its term ends", (await Body(cancel)).GetProperty("detail").GetString());
        var (_, other) = await platform.NewTenantAsync();
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/reservations/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await customer.PostAsJsonAsync("/v1/reservations", new { model = "gpt-4o", region = "westeurope", type = "DataZone", ptu = 5, term = "Decade" })).StatusCode);
    }

    [Fact]
    public async Task The_catalog_and_the_capacity_calculator()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var models = await Body(await customer.GetAsync("/v1/models"));
        var gpt4o = models.EnumerateArray().Single(m => m.GetProperty("name").GetString() == "gpt-4o");
        Assert.Equal(2500, gpt4o.GetProperty("inputTokensPerMinutePerPtu").GetInt64());

        // 10 rpm × (1,000 prompt × (1 − 0.2) + 4 × 100 output) = 12,000 weighted/min = 4.8 PTU of gpt-4o
        var estimate = await Body(await customer.PostAsJsonAsync("/v1/capacity/estimate", new { model = "gpt-4o", requestsPerMinute = 10, promptTokens = 1000, outputTokens = 100, cacheHitRate = 0.2 }));
        Assert.Equal(12000m, estimate.GetProperty("weightedTokensPerMinute").GetDecimal());
        Assert.Equal(4.8m, estimate.GetProperty("ptu").GetDecimal());

        var bad = await customer.PostAsJsonAsync("/v1/capacity/estimate", new { model = "gpt-4o", requestsPerMinute = 10, promptTokens = 1000, outputTokens = 100, cacheHitRate = 1.5 });
        Assert.True((await Body(bad)).GetProperty("errors").TryGetProperty("cacheHitRate", out _));
    }

    [Fact]
    public async Task A_customer_finds_the_regions_with_room_for_a_model_and_its_price_in_their_currency()
    {
        var (_, euro) = await platform.NewTenantAsync("EUR");
        var (_, other) = await platform.NewTenantAsync();
        var roomy = await platform.NewPoolAsync("gpt-4.1-nano", 10);
        var tight = await platform.NewPoolAsync("gpt-4.1-nano", 3);
        var otherModel = await platform.NewPoolAsync("gpt-4o", 50);
        // Another tenant's purchase shows only as less room, never as its deployment or its size.
        await PlatformFixture.BuyAsync(other, tight, 2.5m, model: "gpt-4.1-nano", name: "someone-elses");

        var answer = await euro.GetAsync("/v1/capacity/regions?model=gpt-4.1-nano&ptu=1.5");

        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        var body = await Body(answer);
        Assert.Equal("EUR", body.GetProperty("currency").GetString());
        var nano = (await Body(await euro.GetAsync("/v1/models"))).EnumerateArray().Single(m => m.GetProperty("name").GetString() == "gpt-4.1-nano");
        Assert.Equal(nano.GetProperty("prices").GetProperty("EUR").GetProperty("perPtuHour").GetDecimal(), body.GetProperty("pricePerPtuHour").GetDecimal());
        var regions = body.GetProperty("regions").EnumerateArray().ToDictionary(r => r.GetProperty("region").GetString()!);
        Assert.DoesNotContain(otherModel, regions.Keys);
        Assert.Equal((10m, true), (regions[roomy].GetProperty("availablePtu").GetDecimal(), regions[roomy].GetProperty("fits").GetBoolean()));
        Assert.Equal((0.5m, false), (regions[tight].GetProperty("availablePtu").GetDecimal(), regions[tight].GetProperty("fits").GetBoolean()));
        Assert.Equal(["availablePtu", "fits", "region"], regions[tight].EnumerateObject().Select(p => p.Name).Order());
        Assert.DoesNotContain("someone-elses", body.GetRawText());

        var withoutAmount = await Body(await euro.GetAsync("/v1/capacity/regions?model=gpt-4.1-nano"));
        Assert.Equal(JsonValueKind.Null, withoutAmount.GetProperty("regions").EnumerateArray().First().GetProperty("fits").ValueKind);
        var unknown = await euro.GetAsync("/v1/capacity/regions?model=no-such-model");
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.True((await Body(unknown)).GetProperty("errors").TryGetProperty("model", out _));
        Assert.Equal(HttpStatusCode.BadRequest, (await euro.GetAsync("/v1/capacity/regions?model=gpt-4.1-nano&ptu=0")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await platform.Client(await IssueStaffKey("Finance")).GetAsync("/v1/capacity/regions?model=gpt-4.1-nano")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await platform.Client(null).GetAsync("/v1/capacity/regions?model=gpt-4.1-nano")).StatusCode);
    }

    [Fact]
    public async Task The_OpenAPI_document_describes_every_endpoint_and_the_reference_page_renders()
    {
        var anonymous = platform.Client(null);
        var document = await platform.OpenApiDocumentAsync();
        var paths = document.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToHashSet();
        foreach (var path in new[]
                 {
                     "/v1/models", "/v1/capacity/estimate", "/v1/capacity/regions", "/v1/deployments", "/v1/deployments/{deploymentId}", "/v1/deployments/{deploymentId}/resize",
                     "/v1/deployments/{deploymentId}/release", "/v1/deployments/{deploymentId}/spillover", "/v1/reservations", "/v1/operator/tenants",
                     "/v1/operator/tenants/{tenantId}/keys", "/v1/operator/keys", "/v1/operator/pools", "/v1/operator/pools/{model}/{region}",
                 })
            Assert.Contains(path, paths);
        // Success answers come from the handlers' result types: every operation declares one, with a body unless it has none.
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        foreach (var operation in path.Value.EnumerateObject())
        {
            var success = operation.Value.GetProperty("responses").EnumerateObject().Where(r => r.Name.StartsWith('2')).ToList();
            Assert.True(success.Count > 0, $"{operation.Name} {path.Name} declares no success response");
            Assert.All(success.Where(r => r.Name is not ("202" or "204")),
                r => Assert.True(r.Value.TryGetProperty("content", out _), $"{operation.Name} {path.Name} {r.Name} declares no body"));
        }
        var operations = document.GetProperty("paths");
        var purchase = operations.GetProperty("/v1/deployments").GetProperty("post");
        Assert.Equal("#/components/schemas/DeploymentView",
            purchase.GetProperty("responses").GetProperty("201").GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString());
        // The headers of the contract: Idempotency-Key where a retry must not act twice, If-Match where a change needs the
        // revision it was decided on, ETag on what returns one, and the per-key rate limit's 429 with Retry-After everywhere;
        // whatever can be refused can also meet a database outage: its 503, with Retry-After and problem details.
        static IEnumerable<string> HeaderParameters(JsonElement operation) => operation.TryGetProperty("parameters", out var ps)
            ? ps.EnumerateArray().Where(p => p.GetProperty("in").GetString() == "header").Select(p => p.GetProperty("name").GetString()!) : [];
        Assert.Contains("Idempotency-Key", HeaderParameters(purchase));
        Assert.Contains("Idempotency-Key", HeaderParameters(operations.GetProperty("/v1/reservations").GetProperty("post")));
        var resize = operations.GetProperty("/v1/deployments/{deploymentId}/resize").GetProperty("post");
        Assert.True(resize.GetProperty("parameters").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "If-Match").GetProperty("required").GetBoolean());
        Assert.True(resize.GetProperty("responses").GetProperty("200").GetProperty("headers").TryGetProperty("ETag", out _));
        Assert.True(operations.GetProperty("/v1/deployments/{deploymentId}").GetProperty("get").GetProperty("responses").GetProperty("200").GetProperty("headers").TryGetProperty("ETag", out _));
        foreach (var path in operations.EnumerateObject())
        foreach (var operation in path.Value.EnumerateObject())
        {
            var responses = operation.Value.GetProperty("responses");
            Assert.True(responses.GetProperty("429").GetProperty("headers").TryGetProperty("Retry-After", out _), $"{operation.Name} {path.Name} has no 429 with Retry-After");
            if (!responses.EnumerateObject().Any(r => r.Name.StartsWith('4'))) continue;
            Assert.True(responses.TryGetProperty("503", out var unavailable) && unavailable.TryGetProperty("headers", out var headers) && headers.TryGetProperty("Retry-After", out _)
                        && unavailable.GetProperty("content").TryGetProperty("application/problem+json", out _),
                $"{operation.Name} {path.Name} answers 4xx but has no 503 with Retry-After and problem details");
        }
        Assert.True(document.GetProperty("components").GetProperty("securitySchemes").TryGetProperty("ApiKey", out _));
        var page = await anonymous.GetAsync("/docs");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("text/html", page.Content.Headers.ContentType!.MediaType);
    }

    async Task<string> IssueStaffKey(string role)
    {
        var issued = await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role, name = role + " test" });
        issued.EnsureSuccessStatusCode();
        return (await Body(issued)).GetProperty("apiKey").GetString()!;
    }
}
