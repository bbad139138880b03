using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Throughput.Contracts;
using Throughput.Deployments;

namespace Throughput.IntegrationTests;

/// <summary>Metering through real RabbitMQ into real PostgreSQL: exact counts, throttling, quarantine.</summary>
[Collection(PlatformCollection.Name)]
public sealed class MeteringTests(PlatformFixture platform)
{
    static MeteringRecord Record(string id, string deploymentId, long prompt = 100, long cached = 0, long output = 10, bool spilled = false)
    {
        var now = DateTimeOffset.UtcNow;
        return new MeteringRecord(id, deploymentId, "req-" + id, prompt, cached, output, spilled, 0, now.AddMilliseconds(-300), now);
    }

    static async Task<JsonElement> Deployment(HttpClient customer, string id) =>
        await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{id}");

    [Fact]
    public async Task Counts_are_exact_under_duplicate_publishes_and_replays()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o-mini", 100);
        var producer = await platform.NewServingNodeAsync(region);
        var deployments = new[]
        {
            await PlatformFixture.BuyAsync(customer, region, 20, "gpt-4o-mini"),
            await PlatformFixture.BuyAsync(customer, region, 20, "gpt-4o-mini"),
            await PlatformFixture.BuyAsync(customer, region, 20, "gpt-4o-mini"),
        };
        var batches = new List<MeteringBatch>();
        var sequence = 0L;
        for (var round = 0; round < 40; round++)
            foreach (var d in deployments)
            {
                sequence++;
                batches.Add(new MeteringBatch(1, producer, sequence, DateTimeOffset.UtcNow,
                    [.. Enumerable.Range(0, 25).Select(i => Record($"{sequence}-{i}", d, prompt: 100 + i, cached: i, output: 7))]));
            }

        // Every batch twice (a producer retrying after a lost confirm), then a replay of the first 30 once counted.
        foreach (var batch in batches)
        {
            await platform.PublishAsync(batch);
            await platform.PublishAsync(batch);
        }
        await WaitForRecords(customer, deployments, 40 * 25);
        foreach (var batch in batches.Take(30)) await platform.PublishAsync(batch);
        var marker = new MeteringBatch(1, producer, ++sequence, DateTimeOffset.UtcNow, [Record("marker", deployments[0])]);
        await platform.PublishAsync(marker);
        await Eventually.Until(async () => (await Deployment(customer, deployments[0])).GetProperty("bucket").GetProperty("meteredRecords").GetInt64(), n => n == 40 * 25 + 1);

        foreach (var d in deployments)
        {
            var totals = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{d}/usage/totals");
            var extra = d == deployments[0] ? 1 : 0;
            Assert.Equal(40 * 25 + extra, totals.GetProperty("records").GetInt64());
            Assert.Equal(40 * (25 * 100 + 300) + 100 * extra, totals.GetProperty("promptTokens").GetInt64()); // Σ(100+i), i<25
            Assert.Equal(40 * 300, totals.GetProperty("cachedTokens").GetInt64());
            Assert.Equal(40 * 25 * 7 + 10 * extra, totals.GetProperty("outputTokens").GetInt64());
        }
    }

    [Fact]
    public async Task A_batch_that_arrives_after_a_later_one_still_counts_once()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var producer = await platform.NewServingNodeAsync(region);
        var id = await PlatformFixture.BuyAsync(customer, region, 5);
        var later = new MeteringBatch(1, producer, 10, DateTimeOffset.UtcNow, [Record("late-10", id, prompt: 10)]);
        var earlier = new MeteringBatch(1, producer, 9, DateTimeOffset.UtcNow, [Record("late-9", id, prompt: 9)]);

        await platform.PublishAsync(later);
        await WaitForRecords(customer, [id], 1);
        await platform.PublishAsync(earlier);
        await platform.PublishAsync(later);
        await WaitForRecords(customer, [id], 2);
        await platform.PublishAsync(earlier);
        var marker = new MeteringBatch(1, producer, 11, DateTimeOffset.UtcNow, [Record("late-11", id, prompt: 11)]);
        await platform.PublishAsync(marker);
        await WaitForRecords(customer, [id], 3);

        var totals = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{id}/usage/totals");
        Assert.Equal(3, totals.GetProperty("records").GetInt64());
        Assert.Equal(30, totals.GetProperty("promptTokens").GetInt64());
    }

    static async Task WaitForRecords(HttpClient customer, IEnumerable<string> deployments, long expected)
    {
        foreach (var d in deployments)
            await Eventually.Until(async () => (await Deployment(customer, d)).GetProperty("bucket").GetProperty("meteredRecords").GetInt64(), n => n >= expected);
    }

    [Fact]
    public async Task A_deployment_driven_over_its_rate_is_throttled_and_released_once_idle()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var producer = await platform.NewServingNodeAsync();
        var id = await PlatformFixture.BuyAsync(customer, region, 0.1m); // 250 weighted tokens per minute, bucket depth 250

        // 200 prompt + 4 × 15 output = 260 weighted tokens: 104% of the bucket.
        await platform.PublishAsync(new MeteringBatch(1, producer, 1, DateTimeOffset.UtcNow, [Record("hot-1", id, prompt: 200, output: 15)]));

        var throttled = await Eventually.Until(() => Deployment(customer, id), d => d.GetProperty("bucket").GetProperty("throttled").GetBoolean());
        Assert.True(throttled.GetProperty("bucket").GetProperty("retryAfterMs").GetInt64() > 0);
        var released = await Eventually.Until(() => Deployment(customer, id), d => !d.GetProperty("bucket").GetProperty("throttled").GetBoolean(), TimeSpan.FromSeconds(30));
        Assert.True(released.GetProperty("bucket").GetProperty("utilization").GetDecimal() < 0.95m);

        await using var session = platform.Services.GetRequiredService<IDocumentStore>().QuerySession();
        var events = (await session.Events.FetchStreamAsync(id)).Select(e => e.Data).ToList();
        var throttle = Assert.Single(events.OfType<DeploymentThrottled>());
        Assert.Equal(1.04m, throttle.Utilization);
        Assert.Single(events.OfType<ThrottleLifted>());
        Assert.True(events.IndexOf(throttle) < events.FindIndex(e => e is ThrottleLifted));
    }

    [Fact]
    public async Task Bad_input_is_quarantined_with_its_reason_and_good_records_in_the_same_batch_count()
    {
        var (tenant, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var producer = await platform.NewServingNodeAsync(region);
        var good = await PlatformFixture.BuyAsync(customer, region, 1);
        var released = await PlatformFixture.BuyAsync(customer, region, 1);
        var release = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{released}/release");
        release.Headers.IfMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue("\"1\""));
        (await customer.SendAsync(release)).EnsureSuccessStatusCode();
        var (_, other) = await platform.NewTenantAsync();
        var elsewhere = await PlatformFixture.BuyAsync(other, await platform.NewPoolAsync("gpt-4o", 10), 1);

        var now = DateTimeOffset.UtcNow;
        await platform.PublishAsync(new MeteringBatch(1, producer, 1, now,
        [
            Record("ok-1", good, prompt: 1000, output: 10),
            Record("negative", good, prompt: -5),
            Record("absurd", good, output: 999_999_999_999),
            Record("cache-over", good, prompt: 10, cached: 11),
            Record("ok-2", good, prompt: 500, output: 20),
            Record("ghost", "dep-does-not-exist"),
            Record("late", released),
            Record("foreign", elsewhere),
            new MeteringRecord("future", good, "r", 1, 0, 1, false, 0, now.AddHours(2), now.AddHours(3)),
        ]));
        await platform.PublishRawAsNodeAsync(producer, good, Encoding.UTF8.GetBytes("{\"version\": 1, \"producerId\": \"" + producer + "\", \"records\": [ {broken"));
        await platform.PublishRawAsNodeAsync(producer, good, JsonSerializer.SerializeToUtf8Bytes(new MeteringBatch(2, producer, 2, now, [Record("v2", good)]), PlatformFixture.Json));
        await platform.PublishRawAsync(good, JsonSerializer.SerializeToUtf8Bytes(new MeteringBatch(1, "node-unregistered-" + tenant, 1, now, [Record("stranger", good)]), PlatformFixture.Json));
        await platform.PublishAsync(new MeteringBatch(1, producer, 3, now, [.. Enumerable.Range(0, 10_001).Select(i => Record($"big-{i}", good))]));
        await platform.PublishRawAsNodeAsync(producer, good, Encoding.UTF8.GetBytes("""{"version":1,"producerId":"PRODUCER","sequence":4,"sentAt":"AT","records":[{"recordId":"typed","deploymentId":"DEP","promptTokens":"many","cachedTokens":0,"outputTokens":1,"spilled":false,"startedAt":"AT","finishedAt":"AT"},{"recordId":"ok-3","deploymentId":"DEP","promptTokens":3,"cachedTokens":0,"outputTokens":1,"spilled":false,"estimatedTokens":0,"startedAt":"AT","finishedAt":"AT","futureField":{"x":[1,2]}}]}""".Replace("PRODUCER", producer).Replace("DEP", good).Replace("AT", now.AddSeconds(-1).ToString("O"))));

        var totals = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{good}/usage/totals"), t => t.GetProperty("records").GetInt64() >= 3);
        Assert.Equal(3, totals.GetProperty("records").GetInt64());
        Assert.Equal(1503, totals.GetProperty("promptTokens").GetInt64());
        Assert.Equal(31, totals.GetProperty("outputTokens").GetInt64());

        var quarantine = await Eventually.Until(
            () => platform.Operator().GetFromJsonAsync<JsonElement[]>($"/v1/operator/quarantine?limit=1000"),
            q => q!.Count(e => Mentions(e, producer, good)) >= 11 && q!.Any(e => Mentions(e, producer, good) && e.GetProperty("detail").GetString()!.Contains("more than 10000 records")) && q!.Any(e => e.GetProperty("excerpt").GetString()?.Contains(producer) == true && e.GetProperty("reason").GetString() == "MalformedMessage" && e.GetProperty("detail").GetString()!.Contains("not valid JSON")));
        var mine = quarantine!.Where(e => Mentions(e, producer, good)).ToList();
        string ReasonOf(string recordId) => mine.Single(e => e.GetProperty("recordId").GetString() == recordId).GetProperty("reason").GetString()!;
        string DetailOf(string recordId) => mine.Single(e => e.GetProperty("recordId").GetString() == recordId).GetProperty("detail").GetString()!;
        Assert.Contains("promptTokens is negative", DetailOf("negative"));
        Assert.Contains("outputTokens is implausibly large", DetailOf("absurd"));
        Assert.Contains("cachedTokens exceeds promptTokens", DetailOf("cache-over"));
        Assert.Contains("promptTokens is not an integer", DetailOf("typed"));
        Assert.Equal("UnknownDeployment", ReasonOf("ghost"));
        Assert.Equal("ReleasedDeployment", ReasonOf("late"));
        Assert.Equal("NotServedByProducer", ReasonOf("foreign"));
        Assert.Equal("TimestampInFuture", ReasonOf("future"));
        Assert.Contains(mine, e => e.GetProperty("detail").GetString()!.Contains("version 2 is not supported"));
        Assert.Contains(mine, e => e.GetProperty("detail").GetString()!.Contains("more than 10000 records"));
        Assert.Contains(quarantine!, e => e.GetProperty("reason").GetString() == "UnknownProducer" && e.GetProperty("producerId").GetString() == "node-unregistered-" + tenant);

        var foreign = await other.GetFromJsonAsync<JsonElement>($"/v1/deployments/{elsewhere}/usage/totals");
        Assert.Equal(0, foreign.GetProperty("records").GetInt64());

        Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await customer.GetAsync("/metrics")).StatusCode);
    }

    [Fact]
    public async Task A_deployment_changed_after_its_partition_metered_it_is_metered_as_it_is_now()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var producer = await platform.NewServingNodeAsync(region);
        var id = await PlatformFixture.BuyAsync(customer, region, 1);
        (await customer.PutAsJsonAsync($"/v1/deployments/{id}/spillover", new { enabled = true })).EnsureSuccessStatusCode();
        async Task<long> Records() => (await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{id}/usage/totals")).GetProperty("records").GetInt64();
        async Task<string?> Reason(string recordId) =>
            (await platform.Operator().GetFromJsonAsync<JsonElement[]>($"/v1/operator/quarantine?producerId={producer}&limit=100"))!
                .FirstOrDefault(e => e.GetProperty("recordId").GetString() == recordId) is { ValueKind: JsonValueKind.Object } e ? e.GetProperty("reason").GetString() : null;

        // Metered once: the deployment's partition now holds its snapshot, spillover on.
        await platform.PublishAsync(new MeteringBatch(1, producer, 1, DateTimeOffset.UtcNow, [Record("before", id), Record("spilled-before", id, spilled: true)]));
        await Eventually.Until(Records, n => n == 2);

        // Each change moves the deployment's stream under that snapshot; the next batch meters by the change.
        (await customer.PutAsJsonAsync($"/v1/deployments/{id}/spillover", new { enabled = false })).EnsureSuccessStatusCode();
        await platform.PublishAsync(new MeteringBatch(1, producer, 2, DateTimeOffset.UtcNow, [Record("spilled-after-off", id, spilled: true), Record("after-off", id)]));
        Assert.Equal("SpilloverOff", await Eventually.Until(() => Reason("spilled-after-off"), r => r is not null));
        await Eventually.Until(Records, n => n == 3);

        var read = await customer.GetAsync($"/v1/deployments/{id}");
        var release = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{id}/release");
        release.Headers.IfMatch.Add(read.Headers.ETag!);
        (await customer.SendAsync(release)).EnsureSuccessStatusCode();
        await platform.PublishAsync(new MeteringBatch(1, producer, 3, DateTimeOffset.UtcNow, [Record("after-release", id)]));
        Assert.Equal("ReleasedDeployment", await Eventually.Until(() => Reason("after-release"), r => r is not null));
        Assert.Equal(3, await Records());
    }

    [Fact]
    public async Task A_producer_is_billed_only_from_its_own_broker_user()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var genuine = await platform.NewServingNodeAsync(region);
        var elsewhere = await platform.NewServingNodeAsync(region);
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1);
        byte[] Body(string producer, long sequence, string recordId) =>
            JsonSerializer.SerializeToUtf8Bytes(new MeteringBatch(1, producer, sequence, DateTimeOffset.UtcNow, [Record(recordId, deployment, prompt: 1000)]), PlatformFixture.Json);

        // Another node's broker user claiming the genuine producer id (and its next sequence); no user id at all; a user id that is not ours.
        await platform.PublishRawAsNodeAsync(elsewhere, deployment, Body(genuine, 1, "claims-another-node"));
        await platform.PublishRawAsNodeAsync(genuine, deployment, Body(genuine, 2, "anonymous"), userId: null);
        var forged = await Xunit.Record.ExceptionAsync(() => platform.PublishRawAsNodeAsync(genuine, deployment, Body(genuine, 3, "forged-user-id"), userId: platform.BrokerUserOf(elsewhere)));
        Assert.NotNull(forged); // the broker closes the channel: PRECONDITION_FAILED, user_id is not the connection's user
        await platform.PublishRawAsNodeAsync(genuine, deployment, Body(genuine, 1, "genuine"));

        var quarantine = await Eventually.Until(
            () => platform.Operator().GetFromJsonAsync<JsonElement[]>($"/v1/operator/quarantine?reason=UnauthenticatedProducer&producerId={genuine}&limit=1000"),
            q => q!.Length >= 2);
        Assert.Contains(quarantine!, e => e.GetProperty("detail").GetString()!.Contains($"came from broker user '{platform.BrokerUserOf(elsewhere)}'", StringComparison.Ordinal));
        Assert.Contains(quarantine!, e => e.GetProperty("detail").GetString()!.Contains("carried no user id", StringComparison.Ordinal));

        // Sequence 1 was claimed by nobody but the genuine node: its record counts, once.
        var totals = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals"), t => t.GetProperty("records").GetInt64() >= 1);
        Assert.Equal(1, totals.GetProperty("records").GetInt64());
        Assert.Equal(1000, totals.GetProperty("promptTokens").GetInt64());
    }

    static bool Mentions(JsonElement entry, string producer, string deployment) =>
        entry.GetProperty("producerId").GetString() == producer
        || entry.GetProperty("excerpt").GetString()?.Contains(producer) == true
        || entry.GetProperty("deploymentId").GetString() == deployment;

    [Fact]
    public async Task Usage_is_queryable_per_minute()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var producer = await platform.NewServingNodeAsync();
        var id = await PlatformFixture.BuyAsync(customer, region, 2);
        (await customer.PutAsJsonAsync($"/v1/deployments/{id}/spillover", new { enabled = true })).EnsureSuccessStatusCode();

        await platform.PublishAsync(new MeteringBatch(1, producer, 1, DateTimeOffset.UtcNow,
            [Record("a", id, prompt: 300, cached: 100, output: 50), Record("b", id, prompt: 100, output: 10, spilled: true)]));

        var minutes = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement[]>($"/v1/deployments/{id}/usage"), m => m!.Sum(x => x.GetProperty("records").GetInt64()) == 2);
        var minute = Assert.Single(minutes!);
        Assert.Equal(400, minute.GetProperty("promptTokens").GetInt64());
        Assert.Equal(100, minute.GetProperty("cachedTokens").GetInt64());
        Assert.Equal(60, minute.GetProperty("outputTokens").GetInt64());
        Assert.Equal(200 + 4 * 50 + 100 + 4 * 10, minute.GetProperty("weightedTokens").GetDecimal());
        Assert.Equal(1, minute.GetProperty("spilledRecords").GetInt64());
        Assert.Equal(5000, minute.GetProperty("tokensPerMinute").GetInt64());
        Assert.Equal(0.08m, minute.GetProperty("maxUtilization").GetDecimal()); // only the unspilled 400 weighted tokens fill the bucket of 5,000

        // Usage moved the stream, not the customer's revision: the ETag after turning spillover on, read before metering, still resizes.
        var resize = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{id}/resize") { Content = JsonContent.Create(new { ptu = 3 }) };
        resize.Headers.IfMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue("\"2\""));
        var resized = await customer.SendAsync(resize);
        Assert.Equal(System.Net.HttpStatusCode.OK, resized.StatusCode);
        Assert.Equal("\"3\"", resized.Headers.ETag!.Tag);
    }
}
