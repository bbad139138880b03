using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;

namespace Throughput.IntegrationTests;

/// <summary>
/// Forge's global view and finance's pool utilization, counted by placement, through the real host with the clock set by
/// the test, in the fixture's own geography of two fresh regions (ga, gb). gpt-5.1: 4,750 weighted tokens a minute per PTU.
/// </summary>
[Collection(InvoicingCollection.Name)]
public sealed class GlobalViewTests(InvoicingFixture platform)
{
    const string Model = "gpt-5.1";
    static readonly DateTimeOffset Start = new(2033, 3, 1, 0, 0, 0, TimeSpan.Zero);

    static async Task<JsonElement> Body(HttpResponseMessage response) => await response.Content.ReadFromJsonAsync<JsonElement>();

    static MeteringRecord Record(string deployment, long prompt, DateTimeOffset finishedAt) =>
        new(Guid.NewGuid().ToString("N"), deployment, "q", prompt, 0, 0, false, 0, finishedAt.AddSeconds(-3), finishedAt);

    static async Task<string> BuyAsync(HttpClient customer, string region, decimal ptu, Dictionary<string, decimal> placement)
    {
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name = "g", model = Model, region, type = "Global", ptu });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await Body(created);
        Assert.Equal(placement, body.GetProperty("placement").EnumerateArray().ToDictionary(s => s.GetProperty("region").GetString()!, s => s.GetProperty("ptu").GetDecimal()));
        return body.GetProperty("id").GetString()!;
    }

    static (decimal Capacity, decimal Sold, decimal Placed, decimal SoldOfCapacity, decimal PlacedOfCapacity, decimal RecentTokens, decimal RecentUtilization, decimal MonthTokens, decimal MonthUtilization) Figures(JsonElement f) =>
        (f.GetProperty("capacityPtu").GetDecimal(), f.GetProperty("soldPtu").GetDecimal(), f.GetProperty("placedPtu").GetDecimal(),
            f.GetProperty("soldOfCapacity").GetDecimal(), f.GetProperty("placedOfCapacity").GetDecimal(),
            f.GetProperty("recentWeightedTokens").GetDecimal(), f.GetProperty("recentUtilization").GetDecimal(),
            f.GetProperty("monthWeightedTokens").GetDecimal(), f.GetProperty("monthUtilization").GetDecimal());

    [Fact]
    public async Task The_global_view_shows_each_regions_capacity_sold_placed_and_served_and_the_fleets_sold_over_capacity_with_a_split_placement_shared_by_its_ptus()
    {
        var (geography, regions) = platform.Geography;
        var (ga, gb) = (regions[0], regions[1]);
        platform.Clock.Set(Start);
        foreach (var region in regions)
            (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/{Model}/{region}", new { capacityPtu = 10 })).EnsureSuccessStatusCode();
        var (_, customer) = await platform.NewTenantAsync();
        var whole = await BuyAsync(customer, ga, 8, new() { [ga] = 8 });
        await BuyAsync(customer, gb, 6, new() { [gb] = 6 });
        // 2 free in ga, 4 in gb: no region has room for 5, so it is split, the roomiest first
        var split = await BuyAsync(customer, ga, 5, new() { [ga] = 1, [gb] = 4 });
        var node = await platform.NewServingNodeAsync(ga, gb);

        // An hour later, served two minutes ago: 19,000 weighted tokens by the whole one (ga), 9,500 by the split one (1/5 ga, 4/5 gb).
        var now = Start.AddHours(1);
        platform.Clock.Set(now);
        await platform.PublishAsync(node, Record(whole, 19_000, now.AddMinutes(-2)), Record(split, 9_500, now.AddMinutes(-2)));

        var operatorClient = platform.Operator();
        var view = await Eventually.Until(async () => await Body(await operatorClient.GetAsync($"/v1/operator/global-view?model={Model}&geography={geography}")),
            v => v.GetProperty("fleet").GetProperty("monthWeightedTokens").GetDecimal() == 28_500m);

        Assert.Equal(("2033-03", now.AddMinutes(-5), now), (view.GetProperty("month").GetString(), view.GetProperty("recentFrom").GetDateTimeOffset(), view.GetProperty("recentTo").GetDateTimeOffset()));
        var byRegion = view.GetProperty("regions").EnumerateArray().ToDictionary(r => r.GetProperty("region").GetString()!);
        Assert.Equal([ga, gb], byRegion.Keys);
        // ga: 10 PTU, 13 bought there (8 + 5), 9 placed (8 + 1). Served 19,000 + 1,900 = 20,900 of 10 × 4,750 × 5 = 237,500 in the
        // last 5 minutes, and of 10 × 4,750 × 60 = 2,850,000 this month (one hour of it).
        Assert.Equal((10m, 13m, 9m, 1.3m, 0.9m, 20_900m, 0.088m, 20_900m, 0.0073m), Figures(byRegion[ga].GetProperty("figures")));
        // gb: 6 bought there, 6 + 4 placed; served 7,600 (4/5 of 9,500)
        Assert.Equal((10m, 6m, 10m, 0.6m, 1m, 7_600m, 0.032m, 7_600m, 0.0027m), Figures(byRegion[gb].GetProperty("figures")));
        Assert.Equal(Model, Assert.Single(byRegion[gb].GetProperty("pools").EnumerateArray()).GetProperty("model").GetString());
        var zone = Assert.Single(view.GetProperty("geographies").EnumerateArray());
        Assert.Equal(geography, zone.GetProperty("geography").GetString());
        Assert.Equal(geography, byRegion[ga].GetProperty("geography").GetString());
        // The fleet (what is shown): 19 of 20 PTU sold, the headline 0.95; 28,500 served of 475,000 and of 5,700,000
        var expected = (20m, 19m, 19m, 0.95m, 0.95m, 28_500m, 0.06m, 28_500m, 0.005m);
        Assert.Equal(expected, Figures(zone.GetProperty("figures")));
        Assert.Equal(expected, Figures(view.GetProperty("fleet")));

        // Operators only; a geography the catalog does not name is a field error.
        Assert.Equal(HttpStatusCode.Forbidden, (await customer.GetAsync("/v1/operator/global-view")).StatusCode);
        var unknown = await operatorClient.GetAsync("/v1/operator/global-view?geography=atlantis");
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.True((await Body(unknown)).GetProperty("errors").TryGetProperty("geography", out _));
    }

    [Fact]
    public async Task Finance_counts_a_deployments_hours_in_the_pools_it_is_placed_in_by_its_share_of_the_placed_ptus()
    {
        const string model = "gpt-4.1-mini"; // 14,900 a minute per PTU; no other test buys it in these regions
        var (_, regions) = platform.Geography;
        var (ga, gb) = (regions[0], regions[1]);
        var start = new DateTimeOffset(2033, 6, 1, 0, 0, 0, TimeSpan.Zero);
        platform.Clock.Set(start);
        (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/{ga}", new { capacityPtu = 3 })).EnsureSuccessStatusCode();
        (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/{gb}", new { capacityPtu = 1 })).EnsureSuccessStatusCode();
        var (_, customer) = await platform.NewTenantAsync();
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name = "split", model, region = ga, type = "DataZone", ptu = 4 });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await Body(created)).GetProperty("id").GetString()!;
        var node = await platform.NewServingNodeAsync(ga, gb);

        // Two hours sold; usage in the first only, 4 × 14,900 × 60 × 0.35 = 1,251,600 weighted tokens (35 %)
        var now = start.AddHours(2);
        platform.Clock.Set(now);
        await platform.PublishAsync(node, Record(id, 1_251_600, start.AddMinutes(30)));

        var finance = await platform.FinanceAsync();
        var rows = await Eventually.Until(async () => (await Body(await finance.GetAsync("/v1/finance/utilization?month=2033-06"))).EnumerateArray()
                .Where(r => r.GetProperty("model").GetString() == model && regions.Contains(r.GetProperty("region").GetString()))
                .Select(r => (Region: r.GetProperty("region").GetString()!, Band: r.GetProperty("band").GetString()!, Hours: r.GetProperty("deploymentHours").GetDecimal()))
                .ToList(),
            r => r.Any(x => x.Band == "30-40%"));

        // Placed 3 in ga and 1 in gb: ga counts 3/4 of each of its two hours, gb 1/4; the used hour is in 30-40 %, the other idle.
        Assert.Equal([(ga, "idle", 0.75m), (ga, "30-40%", 0.75m), (gb, "idle", 0.25m), (gb, "30-40%", 0.25m)], rows);
    }
}
