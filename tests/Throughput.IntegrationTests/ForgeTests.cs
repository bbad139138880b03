using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Throughput.IntegrationTests;

/// <summary>
/// Forge through the real host: Data Zone and Global deployments placed across the catalog's geographies (us: eastus,
/// eastus2, westus3; eu: swedencentral, westeurope, francecentral). Those regions are shared by every run on a schema, so
/// each test uses a model no other test buys and states each pool's free PTUs from what it already holds.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class ForgeTests(PlatformFixture platform)
{
    static readonly string[] Us = ["eastus", "eastus2", "westus3"];
    static readonly string[] Eu = ["swedencentral", "westeurope", "francecentral"];

    static async Task<JsonElement> Body(HttpResponseMessage response) => await response.Content.ReadFromJsonAsync<JsonElement>();

    async Task<Dictionary<string, (decimal Capacity, decimal Sold)>> PoolsAsync(string model) =>
        (await Body(await platform.Operator().GetAsync("/v1/operator/pools"))).EnumerateArray()
            .Where(p => p.GetProperty("model").GetString() == model)
            .ToDictionary(p => p.GetProperty("region").GetString()!, p => (p.GetProperty("capacityPtu").GetDecimal(), p.GetProperty("soldPtu").GetDecimal()));

    /// <summary>Every geography region's pool of the model with exactly this much free (0 where not named).</summary>
    async Task FreeAsync(string model, Dictionary<string, decimal> free)
    {
        var pools = await PoolsAsync(model);
        foreach (var region in Us.Concat(Eu))
        {
            var sold = pools.TryGetValue(region, out var p) ? p.Sold : 0;
            (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/{region}", new { capacityPtu = sold + free.GetValueOrDefault(region) })).EnsureSuccessStatusCode();
        }
    }

    static Dictionary<string, decimal> PlacementOf(JsonElement deployment) =>
        deployment.GetProperty("placement").EnumerateArray().ToDictionary(s => s.GetProperty("region").GetString()!, s => s.GetProperty("ptu").GetDecimal());

    [Fact]
    public async Task Concurrent_global_purchases_across_three_regions_never_oversell_any_pool()
    {
        const string model = "o3";
        await FreeAsync(model, new() { ["eastus"] = 10, ["eastus2"] = 10, ["westus3"] = 10 });
        var before = await PoolsAsync(model);
        var (_, customer) = await platform.NewTenantAsync();

        // 24 × 1.5 = 36 PTU asked of 30 free: 20 fit (some only split across regions), 4 must be refused.
        var responses = await Task.WhenAll(Enumerable.Range(0, 24).Select(i =>
            customer.PostAsJsonAsync("/v1/deployments", new { name = $"g{i}", model, region = Us[i % 3], type = "Global", ptu = 1.5m })));

        Assert.Equal(20, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        Assert.All(responses.Where(r => r.StatusCode != HttpStatusCode.Created), r => Assert.Equal(HttpStatusCode.Conflict, r.StatusCode));
        var after = await PoolsAsync(model);
        foreach (var region in Us.Concat(Eu))
        {
            Assert.True(after[region].Sold <= after[region].Capacity, $"{region} oversold: {after[region]}");
            Assert.Equal(after[region].Capacity, after[region].Sold); // exactly full: what was placed is what was taken
        }
        Assert.Equal(30m, Us.Sum(r => after[r].Sold - before[r].Sold));
        var bought = (await Body(await customer.GetAsync("/v1/deployments"))).EnumerateArray().ToList();
        Assert.Equal(20, bought.Count);
        Assert.All(bought, d =>
        {
            Assert.Equal(1.5m, PlacementOf(d).Values.Sum());
            Assert.False(d.GetProperty("degraded").GetBoolean());
        });
    }

    [Fact]
    public async Task A_drained_regions_deployments_are_re_placed_elsewhere_and_billed_unchanged()
    {
        const string model = "o4-mini";
        await FreeAsync(model, new() { ["eastus"] = 4, ["eastus2"] = 4 });
        var (_, customer) = await platform.NewTenantAsync();
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name = "zone", model, region = "eastus", type = "DataZone", ptu = 3m });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var deployment = await Body(created);
        var id = deployment.GetProperty("id").GetString()!;
        var etag = created.Headers.ETag!.Tag;
        Assert.Equal(new Dictionary<string, decimal> { ["eastus"] = 3m }, PlacementOf(deployment)); // whole, in the region named
        var billedBefore = await DeploymentLinesAsync(customer, id);

        var drained = await platform.Operator().PostAsJsonAsync($"/v1/operator/pools/{model}/eastus/drain", new { });

        Assert.Equal(HttpStatusCode.OK, drained.StatusCode);
        var drain = await Body(drained);
        Assert.Equal(0m, drain.GetProperty("pool").GetProperty("capacityPtu").GetDecimal());
        Assert.Equal(0m, drain.GetProperty("pool").GetProperty("soldPtu").GetDecimal());
        var read = await customer.GetAsync($"/v1/deployments/{id}");
        var moved = await Body(read);
        Assert.Equal(new Dictionary<string, decimal> { ["eastus2"] = 3m }, PlacementOf(moved));
        Assert.False(moved.GetProperty("degraded").GetBoolean());
        Assert.Equal(3m, moved.GetProperty("ptu").GetDecimal());
        Assert.Equal("eastus", moved.GetProperty("region").GetString()); // where it was bought, and billed
        Assert.Equal(etag, read.Headers.ETag!.Tag); // the customer did nothing: their If-Match still holds
        Assert.Equal(3m * 5400, moved.GetProperty("admission").GetProperty("tokensPerMinute").GetDecimal());
        Assert.Equal(billedBefore, await DeploymentLinesAsync(customer, id));
        var pools = await PoolsAsync(model);
        Assert.All(Us, r => Assert.True(pools[r].Sold <= pools[r].Capacity, $"{r} oversold: {pools[r]}"));

        // Releasing gives the PTUs back to the pool that holds them now.
        var release = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{id}/release");
        release.Headers.IfMatch.Add(EntityTagHeaderValue.Parse(etag));
        Assert.Equal(HttpStatusCode.OK, (await customer.SendAsync(release)).StatusCode);
        Assert.Equal(pools["eastus2"].Sold - 3m, (await PoolsAsync(model))["eastus2"].Sold);
    }

    [Fact]
    public async Task A_deployment_with_no_capacity_left_is_degraded_and_says_so()
    {
        const string model = "gpt-5-mini";
        await FreeAsync(model, new() { ["westeurope"] = 5, ["francecentral"] = 1 });
        var (_, customer) = await platform.NewTenantAsync();
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name = "eu", model, region = "westeurope", type = "DataZone", ptu = 4m });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await Body(created)).GetProperty("id").GetString()!;

        (await platform.Operator().PostAsJsonAsync($"/v1/operator/pools/{model}/westeurope/drain", new { })).EnsureSuccessStatusCode();

        var degraded = await Body(await customer.GetAsync($"/v1/deployments/{id}"));
        Assert.True(degraded.GetProperty("degraded").GetBoolean());
        Assert.Equal(3m, degraded.GetProperty("unplacedPtu").GetDecimal()); // 1 PTU found room in francecentral, 3 nowhere
        Assert.Equal(new Dictionary<string, decimal> { ["francecentral"] = 1m }, PlacementOf(degraded));
        Assert.Equal(4m, degraded.GetProperty("ptu").GetDecimal()); // bought and billed as before
        Assert.Equal(1m * 23750, degraded.GetProperty("admission").GetProperty("tokensPerMinute").GetDecimal());
        var node = await platform.NewServingNodeAsync("francecentral");
        var limits = await Body(await (await platform.ServingNodeClientAsync(node)).GetAsync("/v1/admission?region=francecentral"));
        var limit = limits.EnumerateArray().Single(l => l.GetProperty("deploymentId").GetString() == id);
        Assert.Equal("Degraded", limit.GetProperty("state").GetString());
        Assert.Equal(23750, limit.GetProperty("tokensPerMinute").GetInt64());

        // Capacity comes back: raising a pool (with room for whatever an earlier run left degraded too) places the degraded again.
        var westeurope = (await PoolsAsync(model))["westeurope"];
        (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/westeurope", new { capacityPtu = westeurope.Sold + 100 })).EnsureSuccessStatusCode();
        var restored = await Body(await customer.GetAsync($"/v1/deployments/{id}"));
        Assert.False(restored.GetProperty("degraded").GetBoolean());
        Assert.Equal(new Dictionary<string, decimal> { ["francecentral"] = 1m, ["westeurope"] = 3m }, PlacementOf(restored));
        Assert.Equal(4m * 23750, restored.GetProperty("admission").GetProperty("tokensPerMinute").GetDecimal());

        // Given back, so that the next run's degraded deployment is the only one the restore finds.
        var release = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{id}/release");
        release.Headers.IfMatch.Add(EntityTagHeaderValue.Parse(created.Headers.ETag!.Tag));
        Assert.Equal(HttpStatusCode.OK, (await customer.SendAsync(release)).StatusCode);
    }

    [Fact]
    public async Task Raising_a_pool_restores_degraded_deployments_and_no_pool_is_oversold_by_purchases_racing_it()
    {
        const string model = "gpt-5";
        await FreeAsync(model, new() { ["eastus"] = 4 });
        var (_, customer) = await platform.NewTenantAsync();
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name = "zone", model, region = "eastus", type = "DataZone", ptu = 4m });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await Body(created)).GetProperty("id").GetString()!;
        (await platform.Operator().PostAsJsonAsync($"/v1/operator/pools/{model}/eastus/drain", new { })).EnsureSuccessStatusCode();
        Assert.Equal(4m, (await Body(await customer.GetAsync($"/v1/deployments/{id}"))).GetProperty("unplacedPtu").GetDecimal()); // no room left in us
        var before = await PoolsAsync(model);

        // eastus2 is raised by 6 while 8 purchases of 1 PTU race for it: the raise restores the degraded 4 in the transaction
        // that adds the room, so at most the other 2 can be bought, and no purchase ever sees the room the restore takes.
        var raise = platform.Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/eastus2", new { capacityPtu = before["eastus2"].Capacity + 6 });
        var purchases = Enumerable.Range(0, 8).Select(i => customer.PostAsJsonAsync("/v1/deployments", new { name = $"p{i}", model, region = "eastus2", type = "DataZone", ptu = 1m })).ToList();
        Assert.Equal(HttpStatusCode.OK, (await raise).StatusCode);
        var responses = await Task.WhenAll(purchases);

        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.Created, HttpStatusCode.Conflict }));
        var bought = responses.Count(r => r.StatusCode == HttpStatusCode.Created);
        Assert.InRange(bought, 0, 2);
        var restored = await Body(await customer.GetAsync($"/v1/deployments/{id}"));
        Assert.False(restored.GetProperty("degraded").GetBoolean());
        Assert.Equal(new Dictionary<string, decimal> { ["eastus2"] = 4m }, PlacementOf(restored));
        var after = await PoolsAsync(model);
        Assert.All(Us, r => Assert.True(after[r].Sold <= after[r].Capacity, $"{r} oversold: {after[r]}"));
        Assert.Equal(4m + bought, Us.Sum(r => after[r].Sold - before[r].Sold)); // the restored PTUs and the purchases, nothing else

        // Given back, so that the next run starts from pools with nothing of this one in them.
        foreach (var deployment in (await Body(await customer.GetAsync("/v1/deployments"))).EnumerateArray())
        {
            var release = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{deployment.GetProperty("id").GetString()}/release");
            release.Headers.IfMatch.Add(new EntityTagHeaderValue($"\"{deployment.GetProperty("revision").GetInt64()}\""));
            Assert.Equal(HttpStatusCode.OK, (await customer.SendAsync(release)).StatusCode);
        }
    }

    /// <summary>The deployment's provisioned lines on the draft, without their end (which moves with the clock).</summary>
    static async Task<string> DeploymentLinesAsync(HttpClient customer, string deploymentId)
    {
        var draft = await Eventually.Until(async () => await Body(await customer.GetAsync("/v1/invoices/draft")),
            d => d.GetProperty("lines").EnumerateArray().Any(l => l.GetProperty("deploymentId").GetString() == deploymentId));
        return string.Join("\n", draft.GetProperty("lines").EnumerateArray().Where(l => l.GetProperty("deploymentId").GetString() == deploymentId)
            .Select(l => $"{l.GetProperty("region")}|{l.GetProperty("type")}|{l.GetProperty("from")}|{l.GetProperty("ptu")}|{l.GetProperty("unitPrice")}|{l.GetProperty("unit")}"));
    }
}
