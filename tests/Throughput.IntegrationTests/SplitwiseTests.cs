using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;

namespace Throughput.IntegrationTests;

/// <summary>
/// Phase-split (Splitwise) fleets through the real host, RabbitMQ and PostgreSQL: pools split into prompt and generation
/// capacity, deployments drawing from both, and each request metered by two producers (a prompt server and a generation
/// server) under one request id. gpt-4o: 2,500 weighted tokens per minute per PTU, output weight 4.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class SplitwiseTests(PlatformFixture platform)
{
    static async Task<JsonElement> Body(HttpResponseMessage response) => await response.Content.ReadFromJsonAsync<JsonElement>();

    async Task<string> SplitRegionAsync(decimal promptPtu, decimal generationPtu)
    {
        var region = "r" + Guid.NewGuid().ToString("N")[..10];
        (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/gpt-4o/{region}/phases/prompt", new { capacityPtu = promptPtu })).EnsureSuccessStatusCode();
        (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/gpt-4o/{region}/phases/generation", new { capacityPtu = generationPtu })).EnsureSuccessStatusCode();
        return region;
    }

    async Task<Dictionary<string, (decimal Capacity, decimal Sold)>> PhasesAsync(string region) =>
        (await Body(await platform.Operator().GetAsync("/v1/operator/pools"))).EnumerateArray()
            .Where(p => p.GetProperty("region").GetString() == region)
            .ToDictionary(p => p.GetProperty("phase").GetString()!, p => (p.GetProperty("capacityPtu").GetDecimal(), p.GetProperty("soldPtu").GetDecimal()));

    [Fact]
    public async Task Concurrent_purchases_on_a_split_region_draw_from_both_phases_and_oversell_neither()
    {
        var region = await SplitRegionAsync(promptPtu: 10, generationPtu: 6);
        var (_, customer) = await platform.NewTenantAsync();

        // A region is whole or split, and a phase is prompt or generation.
        var whole = await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/gpt-4o/{region}", new { capacityPtu = 5 });
        Assert.Equal(HttpStatusCode.Conflict, whole.StatusCode);
        Assert.Contains("split by phase", await whole.Content.ReadAsStringAsync());
        var bogus = await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/gpt-4o/{region}/phases/decode", new { capacityPtu = 5 });
        Assert.Equal(HttpStatusCode.BadRequest, bogus.StatusCode);
        Assert.True((await Body(bogus)).GetProperty("errors").TryGetProperty("phase", out _));

        // 12 × 1 PTU asked: each takes 1 PTU of prompt and 1 of generation capacity, so the generation pool's 6 decide.
        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(i =>
            customer.PostAsJsonAsync("/v1/deployments", new { name = $"s{i}", model = "gpt-4o", region, type = "Global", ptu = 1 })));
        Assert.Equal(6, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        Assert.All(responses.Where(r => r.StatusCode != HttpStatusCode.Created), r => Assert.Equal(HttpStatusCode.Conflict, r.StatusCode));
        var phases = await PhasesAsync(region);
        Assert.Equal((10m, 6m), phases["Prompt"]);
        Assert.Equal((6m, 6m), phases["Generation"]);

        // The customer sees the region once, with what both phases still have free.
        var regions = await customer.GetFromJsonAsync<JsonElement>($"/v1/capacity/regions?model=gpt-4o&ptu=1");
        var offered = regions.GetProperty("regions").EnumerateArray().Where(r => r.GetProperty("region").GetString() == region).ToList();
        Assert.Equal(0m, Assert.Single(offered).GetProperty("availablePtu").GetDecimal());

        // Releasing gives both phases their PTU back; a resize takes from both again.
        var bought = await Task.WhenAll(responses.Where(r => r.StatusCode == HttpStatusCode.Created).Select(Body));
        var first = bought[0].GetProperty("id").GetString()!;
        Assert.Equal(HttpStatusCode.OK, (await ChangeAsync(customer, first, "release", new { })).StatusCode);
        phases = await PhasesAsync(region);
        Assert.Equal((5m, 5m), (phases["Prompt"].Sold, phases["Generation"].Sold));
        var second = bought[1].GetProperty("id").GetString()!;
        Assert.Equal(HttpStatusCode.Conflict, (await ChangeAsync(customer, second, "resize", new { ptu = 3 })).StatusCode); // 2 more of generation: 1 free
        Assert.Equal(HttpStatusCode.OK, (await ChangeAsync(customer, second, "resize", new { ptu = 2 })).StatusCode);
        phases = await PhasesAsync(region);
        Assert.Equal((6m, 6m), (phases["Prompt"].Sold, phases["Generation"].Sold));
    }

    static async Task<HttpResponseMessage> ChangeAsync(HttpClient customer, string deploymentId, string change, object body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{deploymentId}/{change}") { Content = JsonContent.Create(body) };
        request.Headers.TryAddWithoutValidation("If-Match", (await customer.GetAsync($"/v1/deployments/{deploymentId}")).Headers.ETag!.Tag);
        return await customer.SendAsync(request);
    }

    [Fact]
    public async Task Two_producers_per_request_count_each_token_once_and_each_request_once_whatever_the_duplicates_order_and_killed_nodes()
    {
        var region = await SplitRegionAsync(promptPtu: 4, generationPtu: 2);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1);
        var prompts = await platform.NewPhaseServingNodeAsync("prompt", region);
        var generator = await platform.NewPhaseServingNodeAsync("generation", region);
        var killed = await platform.NewPhaseServingNodeAsync("generation", region);
        var whole = await platform.NewServingNodeAsync(region);
        var finished = DateTimeOffset.UtcNow.AddSeconds(-2);

        long Prompt(int i) => 100 + i;
        long Cached(int i) => i % 3 == 0 ? 10 : 0;
        long Output(int i) => 5 + i % 4;
        MeteringRecord PromptHalf(int i) => new($"p-{i}-{deployment}", deployment, $"req-{i}", Prompt(i), Cached(i), 0, false, Prompt(i) + 4 * 20, finished.AddSeconds(-1), finished, Phase: MeteringPhases.Prompt);
        MeteringRecord GenerationHalf(int i) => new($"g-{i}-{deployment}", deployment, $"req-{i}", 0, 0, Output(i), false, 0, finished.AddSeconds(-1), finished, Phase: MeteringPhases.Generation);
        Task Publish(string producer, long sequence, IEnumerable<MeteringRecord> records) =>
            platform.PublishAsync(new MeteringBatch(1, producer, sequence, DateTimeOffset.UtcNow, [.. records]));

        // Requests 0–9 are generated by one node, whose batch arrives before the prompts it follows and again after its
        // restart (same sequence); 10–19 by a node killed mid-stream: 10–14's output never arrives, 15–19's twice.
        await Publish(generator, 1, Enumerable.Range(0, 10).Select(GenerationHalf));
        await Publish(killed, 1, Enumerable.Range(15, 5).Select(GenerationHalf));
        await Publish(prompts, 2, Enumerable.Range(10, 10).Select(PromptHalf));
        await Publish(prompts, 1, Enumerable.Range(0, 10).Select(PromptHalf));
        await Publish(generator, 1, Enumerable.Range(0, 10).Select(GenerationHalf));
        await Publish(killed, 1, Enumerable.Range(15, 5).Select(GenerationHalf));
        await Publish(prompts, 1, Enumerable.Range(0, 10).Select(PromptHalf));
        // Each half must be its node's phase and carry only its own tokens.
        await Publish(prompts, 3, [PromptHalf(90) with { OutputTokens = 7 }, PromptHalf(91) with { Phase = null }]);
        await Publish(generator, 2, [GenerationHalf(92) with { PromptTokens = 50 }, GenerationHalf(93) with { Phase = MeteringPhases.Prompt }]);
        await Publish(whole, 1, [PromptHalf(94)]);

        // The partition meters the deployment's messages in order: once the last is quarantined, all are counted.
        var quarantined = await Eventually.Until(
            () => platform.Operator().GetFromJsonAsync<JsonElement>("/v1/operator/quarantine?reason=WrongPhase&limit=1000"),
            q => q.EnumerateArray().Count(e => e.GetProperty("deploymentId").GetString() == deployment) >= 5);
        var details = quarantined.EnumerateArray().Where(e => e.GetProperty("deploymentId").GetString() == deployment).Select(e => e.GetProperty("detail").GetString()!).ToList();
        Assert.Equal(5, details.Count);
        Assert.Contains(details, d => d.Contains("a prompt server reported 7 output tokens"));
        Assert.Contains(details, d => d.Contains("a generation server reported 50 prompt tokens"));
        Assert.Contains(details, d => d.Contains($"serving node '{prompts}' serves the prompt phase; the record says whole requests"));
        Assert.Contains(details, d => d.Contains($"serving node '{generator}' serves the generation phase; the record says the prompt phase"));
        Assert.Contains(details, d => d.Contains($"serving node '{whole}' serves whole requests; the record says the prompt phase"));

        int[] generated = [.. Enumerable.Range(0, 10), .. Enumerable.Range(15, 5)];
        // The totals are the meters' rows, written up to a checkpoint after the batch when the partition was behind (docs/metering.md).
        var totals = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals"), t => t.GetProperty("records").GetInt64() >= 20);
        Assert.Equal(20, totals.GetProperty("records").GetInt64()); // each request once, from its prompt half
        Assert.Equal(Enumerable.Range(0, 20).Sum(i => Prompt(i)), totals.GetProperty("promptTokens").GetInt64());
        Assert.Equal(Enumerable.Range(0, 20).Sum(i => Cached(i)), totals.GetProperty("cachedTokens").GetInt64());
        Assert.Equal(generated.Sum(i => Output(i)), totals.GetProperty("outputTokens").GetInt64()); // 10–14: their prompts only

        // Operators see each phase: 1 PTU sold of each, and its servers' own tokens against what the pool can serve.
        var minute = Uri.EscapeDataString(finished.ToString("O"));
        var served = Enumerable.Range(0, 20).Sum(i => Prompt(i) - Cached(i));
        var utilization = await Eventually.Until(
            () => platform.Operator().GetFromJsonAsync<JsonElement>($"/v1/operator/pools/gpt-4o/{region}/phases?minute={minute}"),
            u => u.GetProperty("phases").EnumerateArray().Sum(p => p.GetProperty("servedTokens").GetInt64()) == served + generated.Sum(i => Output(i)));
        var byPhase = utilization.GetProperty("phases").EnumerateArray().ToDictionary(p => p.GetProperty("phase").GetString()!);
        Assert.Equal((4m, 1m, 10_000L, served), (byPhase["Prompt"].GetProperty("capacityPtu").GetDecimal(), byPhase["Prompt"].GetProperty("soldPtu").GetDecimal(),
            byPhase["Prompt"].GetProperty("capacityTokensPerMinute").GetInt64(), byPhase["Prompt"].GetProperty("servedTokens").GetInt64()));
        Assert.Equal((2m, 1m, 1_250L, (long)generated.Sum(i => Output(i))), (byPhase["Generation"].GetProperty("capacityPtu").GetDecimal(), byPhase["Generation"].GetProperty("soldPtu").GetDecimal(),
            byPhase["Generation"].GetProperty("capacityTokensPerMinute").GetInt64(), byPhase["Generation"].GetProperty("servedTokens").GetInt64()));
        Assert.Equal(decimal.Round(served / 10_000m, 4), byPhase["Prompt"].GetProperty("servedShare").GetDecimal());
    }
}
