using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests;

/// <summary>Registering adapters and buying both kinds of adapter deployment through the customer API.</summary>
static class Adapters
{
    public static async Task RegisterAsync(HttpClient customer, string id, string baseModel = "gpt-4o")
    {
        var registered = await customer.PostAsJsonAsync("/v1/adapters", new { id, baseModel, rank = 16, sizeMb = 48.5m });
        Assert.True(registered.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK, $"{id}: {registered.StatusCode} {await registered.Content.ReadAsStringAsync()}");
    }

    public static async Task RegisterAsync(HttpClient customer, IEnumerable<string> ids)
    {
        var registered = await customer.PostAsJsonAsync("/v1/adapters/batch", new { adapters = ids.Select(id => new { id, baseModel = "gpt-4o", rank = 16, sizeMb = 48.5m }) });
        Assert.True(registered.StatusCode == HttpStatusCode.OK, await registered.Content.ReadAsStringAsync());
    }

    public static async Task<HttpResponseMessage> DeployAsync(HttpClient customer, string region, string adapterId, decimal ptu) =>
        await customer.PostAsJsonAsync("/v1/adapter-deployments", new { name = adapterId, adapterId, region, type = "Global", ptu });

    public static async Task<string> DeploySetAsync(HttpClient customer, string region, decimal ptu, IEnumerable<object> adapters, string model = "gpt-4o")
    {
        var created = await customer.PostAsJsonAsync("/v1/adapter-sets", new { name = "fine-tunes", model, region, type = "Global", ptu, adapters });
        Assert.True(created.StatusCode == HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        return (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    }

    public static string[] Thousand(string prefix) => [.. Enumerable.Range(0, 1000).Select(i => $"{prefix}{i:D4}")];
}

/// <summary>
/// Adapter deployments and adapter sets through the real host, RabbitMQ and PostgreSQL, served through the serving SDK's
/// publisher, with the clock set by the test: bought from the base model's pool, metered per adapter, quarantined when a
/// record names an adapter its deployment does not hold, and invoiced to the second. gpt-4o in USD: 1.00 per PTU-hour,
/// 0.05 per adapter-hour.
/// </summary>
[Collection(InvoicingCollection.Name)]
public sealed class AdapterTests(InvoicingFixture platform)
{
    static DateTimeOffset At(int hour, int minute = 0, int second = 0) => new(2031, 3, 10, hour, minute, second, TimeSpan.Zero);

    static MeteringRecord Record(string deployment, string? adapter, long prompt, long output, DateTimeOffset finishedAt) =>
        new(Guid.NewGuid().ToString("N"), deployment, "q", prompt, 0, output, false, 0, finishedAt.AddSeconds(-1), finishedAt, adapter);

    [Fact]
    public async Task Adapter_deployments_and_a_set_of_1000_adapters_are_bought_from_one_pool_metered_per_adapter_held_to_one_rate_and_invoiced_to_the_second()
    {
        platform.Clock.Set(At(10));
        var (_, customer) = await platform.NewTenantAsync();
        var (_, stranger) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 3);
        var node = await platform.NewServingNodeAsync(region);
        var ids = Adapters.Thousand("ft-");
        await Adapters.RegisterAsync(customer, ids);
        await Adapters.RegisterAsync(customer, "legal");
        await Adapters.RegisterAsync(customer, "mini-ft", "gpt-4o-mini");
        await Adapters.RegisterAsync(stranger, "foreign");

        // A registration is idempotent, and the same name with other metadata is a conflict.
        Assert.Equal(HttpStatusCode.OK, (await customer.PostAsJsonAsync("/v1/adapters", new { id = "legal", baseModel = "gpt-4o", rank = 16, sizeMb = 48.5m })).StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await customer.PostAsJsonAsync("/v1/adapters", new { id = "legal", baseModel = "gpt-4o", rank = 8, sizeMb = 48.5m })).StatusCode);
        await Adapters.RegisterAsync(customer, ids.Take(10)); // a batch repeated answers what is registered
        Assert.Equal(1002, (await customer.GetFromJsonAsync<JsonElement>("/v1/adapters")).GetArrayLength());

        var baseDeployment = await PlatformFixture.BuyAsync(customer, region, 1);
        platform.Clock.Set(At(10, 0, 3));
        var legal = await Adapters.DeployAsync(customer, region, "legal", 1);
        Assert.Equal(HttpStatusCode.Created, legal.StatusCode);
        var single = (await legal.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        platform.Clock.Set(At(10, 0, 7));
        var set = await Adapters.DeploySetAsync(customer, region, 1, ids.Select(id => new { adapterId = id }));

        // Adapters and base deployments share the base model's pool: it is sold out now.
        var over = await Adapters.DeployAsync(customer, region, "legal", 0.1m);
        Assert.Equal(HttpStatusCode.Conflict, over.StatusCode);
        Assert.Contains("exhausted", await over.Content.ReadAsStringAsync());
        // A set holds only the tenant's own adapters of its model, each field named.
        var refused = await customer.PostAsJsonAsync("/v1/adapter-sets", new
        {
            name = "bad", model = "gpt-4o", region, type = "Global", ptu = 0.1m,
            adapters = new[] { new { adapterId = "foreign" }, new { adapterId = "mini-ft" } },
        });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, refused.StatusCode);
        var errors = (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors");
        Assert.Contains("No adapter 'foreign'", errors.GetProperty("adapters[0].adapterId")[0].GetString());
        Assert.Contains("fine-tune of gpt-4o-mini", errors.GetProperty("adapters[1].adapterId")[0].GetString());
        var tooMany = await customer.PostAsJsonAsync("/v1/adapter-sets", new
        {
            name = "bad", model = "gpt-4o", region, type = "Global", ptu = 0.1m, adapters = Enumerable.Range(0, 1001).Select(i => new { adapterId = $"x{i}" }),
        });
        Assert.Equal(HttpStatusCode.BadRequest, tooMany.StatusCode);
        Assert.Contains("at most 1,000", await tooMany.Content.ReadAsStringAsync());

        // Served: one request per adapter of the set (5 weighted tokens each, 5,000 in all, twice the set's bucket of 2,500),
        // three on the adapter deployment, and records that name adapters their deployment does not hold.
        platform.Clock.Set(At(10, 30));
        var served = At(10, 29, 59);
        await using (var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(platform.BrokerOf(node), node) { Exchange = platform.MeteringExchange }))
        {
            for (var i = 0; i < ids.Length; i++) await publisher.RecordAsync(Record(set, ids[i], 1 + i % 3, 1, served));
            for (var i = 0; i < 3; i++) await publisher.RecordAsync(Record(single, "legal", 100, 10, served));
            await publisher.RecordAsync(Record(set, "foreign", 1, 1, served));       // another tenant's adapter
            await publisher.RecordAsync(Record(set, "nobody", 1, 1, served));        // registered by no one
            await publisher.RecordAsync(Record(set, "legal", 1, 1, served));         // the tenant's, but not in this set
            await publisher.RecordAsync(Record(set, null, 1, 1, served));            // a set's record must name its adapter
            await publisher.RecordAsync(Record(single, "ft-0001", 1, 1, served));    // not the adapter deployment's adapter
            await publisher.RecordAsync(Record(baseDeployment, "legal", 1, 1, served)); // a base deployment serves no adapter
            await publisher.FlushAsync();
        }

        var expectedPrompt = ids.Select((_, i) => 1L + i % 3).Sum();
        var totals = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{set}/usage/totals"), t => t.GetProperty("records").GetInt64() >= 1000);
        Assert.Equal((1000L, expectedPrompt, 1000L), (totals.GetProperty("records").GetInt64(), totals.GetProperty("promptTokens").GetInt64(), totals.GetProperty("outputTokens").GetInt64()));
        // One rate, one bucket: the set is throttled however thinly its usage is spread over its adapters.
        var setNow = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{set}");
        Assert.True(setNow.GetProperty("bucket").GetProperty("throttled").GetBoolean());
        Assert.Equal(1000, setNow.GetProperty("adapters").GetProperty("caps").EnumerateObject().Count());

        var quarantined = await Eventually.Until(
            () => platform.Operator().GetFromJsonAsync<JsonElement>($"/v1/operator/quarantine?reason=UnknownAdapter&producerId={node}"), q => q.GetArrayLength() >= 6);
        Assert.Equal(6, quarantined.GetArrayLength());
        var details = quarantined.EnumerateArray().Select(q => q.GetProperty("detail").GetString()!).ToList();
        Assert.Contains(details, d => d.Contains("adapter 'foreign' is not one of"));
        Assert.Contains(details, d => d.Contains("adapter 'nobody' is not one of"));
        Assert.Contains(details, d => d.Contains($"adapter 'legal' is not one of deployment '{set}'"));
        Assert.Contains(details, d => d.Contains("the record names none"));
        Assert.Contains(details, d => d.Contains($"adapter 'ft-0001' is not one of deployment '{single}'"));
        Assert.Contains(details, d => d.Contains($"adapter 'legal' is not one of deployment '{baseDeployment}'"));
        Assert.Equal(3, (await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{single}/usage/totals")).GetProperty("records").GetInt64());
        Assert.Equal(0, (await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{baseDeployment}/usage/totals")).GetProperty("records").GetInt64());

        // Per adapter: 1,000 rows that sum to the set's usage, in JSON and CSV; another tenant sees nothing of it.
        var perAdapter = await Eventually.Until(
            () => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{set}/usage/adapters?month=2031-03"), rows => rows.GetArrayLength() == 1000
                && rows.EnumerateArray().Sum(r => r.GetProperty("records").GetInt64()) == 1000);
        Assert.Equal(expectedPrompt, perAdapter.EnumerateArray().Sum(r => r.GetProperty("promptTokens").GetInt64()));
        Assert.Equal(ids, perAdapter.EnumerateArray().Select(r => r.GetProperty("adapterId").GetString()!));
        Assert.Equal(7m, perAdapter[2].GetProperty("weightedTokens").GetDecimal()); // ft-0002: 3 prompt + 4 × 1 output
        var csv = await customer.GetStringAsync($"/v1/deployments/{set}/usage/adapters?month=2031-03&format=csv");
        var csvLines = csv.TrimStart('\uFEFF').Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("deploymentId,adapterId,month,records,promptTokens,cachedTokens,outputTokens,weightedTokens,spilledRecords", csvLines[0]);
        Assert.Equal(1001, csvLines.Length);
        Assert.Equal($"{set},ft-0002,2031-03,1,3,0,1,7,0", csvLines[3]);
        Assert.Equal(HttpStatusCode.NotFound, (await stranger.GetAsync($"/v1/deployments/{set}/usage/adapters")).StatusCode);
        var legalRows = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{single}/usage/adapters?month=2031-03"),
            rows => rows.GetArrayLength() == 1 && rows[0].GetProperty("records").GetInt64() == 3);
        Assert.Equal(300, legalRows[0].GetProperty("promptTokens").GetInt64());

        // The set is released at 11:30:00; the draft at noon bills every second of PTUs and of adapter hosting.
        platform.Clock.Set(At(11, 30));
        var release = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{set}/release");
        release.Headers.IfMatch.Add(new EntityTagHeaderValue("\"1\""));
        (await customer.SendAsync(release)).EnsureSuccessStatusCode();
        platform.Clock.Set(At(12));
        var draft = await Eventually.Until(async () =>
        {
            var response = await customer.GetAsync("/v1/invoices/draft?month=2031-03");
            return response.StatusCode == HttpStatusCode.OK ? await response.Content.ReadFromJsonAsync<JsonElement>() : default;
        }, d => d.ValueKind == JsonValueKind.Object && d.GetProperty("lines").GetArrayLength() == 5
            && d.GetProperty("lines")[4].GetProperty("to").GetDateTimeOffset() == At(11, 30)); // the release has reached the drafts
        var lines = draft.GetProperty("lines").EnumerateArray().Select(l => (
            Kind: l.GetProperty("kind").GetString(), Deployment: l.GetProperty("deploymentId").GetString(), Quantity: l.GetProperty("quantity").GetDecimal(),
            Unit: l.GetProperty("unit").GetString(), Amount: l.GetProperty("amount").GetDecimal())).ToList();
        Assert.Equal(
        [
            ("Provisioned", baseDeployment, 2m, "PTU-hour", 2.00m),          // 10:00 → 12:00 at 1 PTU × 1.00
            ("Provisioned", single, 1.999167m, "PTU-hour", 2.00m),           // 10:00:03 → 12:00 = 7,197 s at the base model's price
            ("AdapterHosting", single, 1.999167m, "adapter-hour", 0.10m),    // 1 adapter × 7,197 s × 0.05 / 3600 = 0.09995…
            ("Provisioned", set, 1.498056m, "PTU-hour", 1.50m),              // 10:00:07 → 11:30:00 = 5,393 s
            ("AdapterHosting", set, 1498.055556m, "adapter-hour", 74.90m),   // 1,000 × 5,393 s × 0.05 / 3600 = 74.9027…
        ], lines);
        Assert.Equal(80.50m, draft.GetProperty("total").GetDecimal());
    }
}

/// <summary>
/// Per-adapter caps at admission: the platform pushes an adapter set's caps with its limit (and answers them when asked),
/// and the serving SDK admits a capped adapter only within its share, and all of the set's adapters together within its rate.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class AdapterAdmissionTests(PlatformFixture platform)
{
    [Fact]
    public async Task A_node_admits_a_capped_adapter_within_its_share_and_a_thousand_adapters_together_within_the_sets_rate()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var ids = Adapters.Thousand("cap-");
        await Adapters.RegisterAsync(customer, ids);
        // 0.1 PTU of gpt-4o: 250 weighted tokens a minute, a bucket of 250; cap-0000 may use a tenth of it.
        var set = await Adapters.DeploySetAsync(customer, region, 0.1m, ids.Select(id => id == "cap-0000" ? (object)new { adapterId = id, cap = 0.1m } : new { adapterId = id }));

        var queried = await platform.Operator().GetFromJsonAsync<AdmissionLimitChanged>($"/v1/admission/{set}", PlatformFixture.Json);
        Assert.Equal(new Dictionary<string, decimal> { ["cap-0000"] = 0.1m }, queried!.AdapterCaps);

        var cache = new AdmissionCache(); // holds 90 % of the burst: 225 tokens, the capped adapter 22.5 of them
        await using var feed = await AdmissionFeed.StartAsync(cache, await platform.ServingNodeClientAsync("adapter-caps"),
            new AdmissionFeedOptions(platform.BrokerOf(await platform.NewServingNodeAsync(region))) { Region = region, Model = "gpt-4o", ConnectionName = "adapter-caps" });
        var limit = await Eventually.Until(() => Task.FromResult(cache.Limit(set)), l => l?.AdapterCaps is not null, TimeSpan.FromSeconds(20));
        Assert.Equal(0.1m, limit!.AdapterCaps!["cap-0000"]);

        // Requests of 100 weighted tokens: the capped adapter's share is full, so it gets one (into debt: its share refills at
        // 0.4 tokens a second); the others get what the bucket has left, 125 tokens, one request of them, and then nobody,
        // however many adapters ask (the next 100 tokens take 18 s to refill).
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(set, "cap-0000", 100, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(set, "cap-0000", 1, 0, 0).Outcome);
        Assert.Equal(["cap-0001"], ids.Skip(1).Where(id => cache.TryAdmit(set, id, 100, 0, 0).IsAdmitted));
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(set, "cap-0000", 1, 0, 0).Outcome);
    }
}
