using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Throughput.Deployments;

namespace Throughput.Tests.Domain;

/// <summary>Usage events are stored data: the hand-written converter reads what the log holds and writes the same JSON.</summary>
public sealed class UsageMeteredJsonSpecs
{
    // The event store's settings: camelCase names, enums as strings.
    static readonly JsonSerializerOptions Store = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Converters = { new JsonStringEnumConverter() } };

    // As the serializer's own converter wrote it into a benchmark's log (key order as jsonb keeps it).
    const string Stored = """
        {"months": null, "records": 464, "meteredAt": "2026-12-02T04:24:51.8685607+00:00", "producers": [{"producerId": "bench-b7e79b6e-node1",
        "lastSequence": 1796185461271672, "firstSequence": 1796185461271672}, {"producerId": "bench-b7e79b6e-node0", "lastSequence": 1796185461113561,
        "firstSequence": 1796185461113561}], "bucketLevel": 111360.0, "utilization": 0.000301, "cachedTokens": 0, "deploymentId": "dep-411d5b4181183a20fbd4",
        "outputTokens": 13920, "promptTokens": 55680, "firstStartedAt": "2026-12-02T04:24:50.6231228+00:00", "lastFinishedAt": "2026-12-02T04:24:50.6298064+00:00",
        "spilledRecords": 0, "weightedTokens": 111360.0, "tokensPerMinute": 370000000, "spilledCachedTokens": 0, "spilledOutputTokens": 0, "spilledPromptTokens": 0}
        """;

    [Fact]
    public void A_stored_usage_event_reads_field_by_field_and_writes_back_as_the_same_json()
    {
        var e = JsonSerializer.Deserialize<UsageMetered>(Stored, Store)!;

        Assert.Equal(("dep-411d5b4181183a20fbd4", 464L, 55680L, 0L, 13920L, 111360.0m, 0.000301m, 370000000L), (e.DeploymentId, e.Tokens.Records, e.Tokens.PromptTokens, e.Tokens.CachedTokens, e.Tokens.OutputTokens, e.WeightedTokens, e.Utilization, e.TokensPerMinute));
        Assert.Equal([new ProducerRange("bench-b7e79b6e-node1", 1796185461271672, 1796185461271672), new ProducerRange("bench-b7e79b6e-node0", 1796185461113561, 1796185461113561)], e.Producers);
        Assert.Equal(DateTimeOffset.Parse("2026-12-02T04:24:50.6298064+00:00", System.Globalization.CultureInfo.InvariantCulture), e.LastFinishedAt);
        Assert.Null(e.Months);
        Assert.Null(e.TenantId);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(Stored), JsonNode.Parse(JsonSerializer.Serialize(e, Store))));
    }

    [Fact]
    public void A_usage_event_split_by_month_round_trips_with_its_months()
    {
        var at = new DateTimeOffset(2026, 11, 30, 23, 59, 59, TimeSpan.Zero);
        var e = new UsageMetered("dep-1", "acme", [new ProducerRange("node", 1, 2)], new TokenCounts(3, 30, 10, 300, 1, 10, 0, 100), 1220.5m, at.AddSeconds(-5),
            at.AddSeconds(2), 17.25m, 0.5m, 2500, at.AddSeconds(3),
            [new MonthlyUsage("2026-11", new TokenCounts(2, 20, 10, 200, 0, 0, 0, 0)), new MonthlyUsage("2026-12", new TokenCounts(1, 10, 0, 100, 1, 10, 0, 100))]);

        var json = JsonSerializer.Serialize(e, Store);
        var back = JsonSerializer.Deserialize<UsageMetered>(json, Store)!;

        Assert.Equal(e with { Producers = back.Producers, Months = back.Months }, back);
        Assert.Equal(e.Producers, back.Producers);
        Assert.Equal(e.Months, back.Months);
        Assert.Equal(json, JsonSerializer.Serialize(back, Store));
    }

    [Fact]
    public void A_usage_batch_is_stored_as_columns_and_reads_back_every_deployments_usage()
    {
        var at = new DateTimeOffset(2026, 11, 30, 23, 59, 59, TimeSpan.Zero);
        var plain = new UsageMetered("dep-1", "acme", [new ProducerRange("node-a", 1, 2), new ProducerRange("node-b", 7, 7)], new TokenCounts(3, 30, 10, 300, 1, 10, 0, 100),
            1220.5m, at.AddSeconds(-5), at.AddSeconds(-1), 17.25m, 0.5m, 2500, at);
        var split = plain with
        {
            DeploymentId = "dep-2", TenantId = null, Producers = [new ProducerRange("node-a", 3, 3)], LastFinishedAt = at.AddSeconds(2),
            Months = [new MonthlyUsage("2026-11", new TokenCounts(2, 20, 10, 200, 0, 0, 0, 0)), new MonthlyUsage("2026-12", new TokenCounts(1, 10, 0, 100, 1, 10, 0, 100))],
            Adapters = [new AdapterUsage("ft-1", "2026-11", new TokenCounts(2, 20, 10, 200, 0, 0, 0, 0), 610.25m)],
        };
        var batch = new UsageBatchMetered([plain, split]);

        var json = JsonSerializer.Serialize(batch, Store);
        var back = JsonSerializer.Deserialize<UsageBatchMetered>(json, Store)!;

        Assert.Equal(["dep-1", "dep-2"], JsonNode.Parse(json)!["deploymentId"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(2, back.Usage.Count);
        foreach (var (written, read) in batch.Usage.Zip(back.Usage))
        {
            Assert.Equal(written with { Producers = [], Months = null, Adapters = null }, read with { Producers = [], Months = null, Adapters = null });
            Assert.Equal(written.Producers, read.Producers);
            Assert.Equal(written.Months, read.Months);
            Assert.Equal(written.Adapters, read.Adapters);
        }
        Assert.Equal(json, JsonSerializer.Serialize(back, Store));
    }

    [Fact]
    public void Usage_batches_read_one_after_another_on_one_thread_each_read_back_as_written()
    {
        var at = new DateTimeOffset(2026, 11, 30, 23, 59, 59, TimeSpan.Zero);
        UsageMetered Usage(int i) => new($"dep-{i}", i % 3 == 0 ? null : "acme", [new ProducerRange($"node-{i % 7}", i, i + 1)], new TokenCounts(i, 10 * i, i, 3 * i, 0, 0, 0, 0),
            13 * i + 0.25m, at.AddSeconds(-i), at, i, i / 1000m, 2500, at);
        // Ids escaped in JSON, and one longer than a thread keeps, read back as written.
        var small = new UsageBatchMetered([Usage(1), Usage(2) with { DeploymentId = "dép-\"2\"" }, Usage(3) with { DeploymentId = new string('d', 200) }]);
        var withMonthsAndAdapters = new UsageBatchMetered([Usage(4) with
        {
            Months = [new MonthlyUsage("2026-11", new TokenCounts(4, 40, 4, 12, 0, 0, 0, 0))],
            Adapters = [new AdapterUsage("ft-1", "2026-11", new TokenCounts(4, 40, 4, 12, 0, 0, 0, 0), 52.25m)],
        }]);
        var large = new UsageBatchMetered([.. Enumerable.Range(1, 5_000).Select(Usage)]); // more than a thread keeps between events
        var empty = new UsageBatchMetered([]);

        foreach (var batch in new[] { small, large, withMonthsAndAdapters, small, empty, large, small })
        {
            var json = JsonSerializer.Serialize(batch, Store);
            var back = JsonSerializer.Deserialize<UsageBatchMetered>(json, Store)!;
            Assert.Equal(json, JsonSerializer.Serialize(back, Store));
            Assert.Equal(batch.Usage.Select(u => (u.DeploymentId, u.TenantId)), back.Usage.Select(u => (u.DeploymentId, u.TenantId)));
        }
    }

    [Fact]
    public void A_batch_stored_as_bytes_is_the_store_s_json_and_reads_back_the_same()
    {
        var at = new DateTimeOffset(2026, 12, 7, 8, 0, 0, TimeSpan.Zero);
        var batch = new UsageBatchMetered([.. Enumerable.Range(1, 3).Select(i => new UsageMetered($"dep-{i}", "acme", [new ProducerRange("node-1", i, i)],
            new TokenCounts(i, 10 * i, 0, 3 * i, 0, 0, 0, 0), 13 * i, at, at, i, i / 100m, 2500, at))]);

        var bytes = UsageBatchMeteredBytes.Instance.Serialize(typeof(UsageBatchMetered), batch);
        var back = (UsageBatchMetered)UsageBatchMeteredBytes.Instance.Deserialize(typeof(UsageBatchMetered), bytes);

        // SQL reads the bytes as this JSON (convert_from(bdata, 'UTF8')::jsonb), so they must be exactly it.
        Assert.Equal(JsonSerializer.Serialize(batch, Store), System.Text.Encoding.UTF8.GetString(bytes));
        Assert.Equal(batch.Usage, back.Usage, UsageWithoutRanges.Instance);
    }

    [Fact]
    public void A_batch_metered_at_one_moment_stores_that_moment_once_and_a_column_of_moments_still_reads()
    {
        var at = new DateTimeOffset(2026, 12, 6, 8, 0, 0, TimeSpan.Zero);
        UsageMetered Usage(string id, DateTimeOffset meteredAt) =>
            new(id, "acme", [new ProducerRange("node-1", 1, 2)], new TokenCounts(1, 10, 0, 3, 0, 0, 0, 0), 13.5m, at, at, 13.5m, 0.1m, 2500, meteredAt);
        var together = new UsageBatchMetered([Usage("dep-1", at), Usage("dep-2", at)]);
        var apart = new UsageBatchMetered([Usage("dep-1", at), Usage("dep-2", at.AddMilliseconds(1))]);

        var once = JsonNode.Parse(JsonSerializer.Serialize(together, Store))!.AsObject();
        Assert.Equal(JsonValueKind.String, once["meteredAt"]!.GetValueKind());
        Assert.Equal(JsonValueKind.Array, JsonNode.Parse(JsonSerializer.Serialize(apart, Store))!["meteredAt"]!.GetValueKind());
        var asColumn = once.DeepClone().AsObject();
        asColumn["meteredAt"] = new JsonArray(JsonValue.Create(at), JsonValue.Create(at));

        // Events written before had the bucket columns last: reading the stored bytes must not depend on the order.
        var bucketsLast = new JsonObject(once.Reverse().Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));
        foreach (var form in new[] { once, asColumn, bucketsLast })
        {
            Assert.Equal(together.Usage, JsonSerializer.Deserialize<UsageBatchMetered>(form.ToJsonString(), Store)!.Usage, UsageWithoutRanges.Instance);
            List<(string, decimal, DateTimeOffset)> buckets = [], fromBytes = [];
            using var json = JsonDocument.Parse(form.ToJsonString());
            Assert.True(UsageBatchMeteredJson.ReadBuckets(json.RootElement, buckets));
            Assert.Equal([("dep-1", 13.5m, at), ("dep-2", 13.5m, at)], buckets);
            Assert.True(UsageBatchMeteredJson.ReadBuckets(System.Text.Encoding.UTF8.GetBytes(form.ToJsonString()), fromBytes));
            Assert.Equal(buckets, fromBytes);
        }
    }

    [Fact]
    public void A_token_count_that_is_0_for_every_deployment_is_left_out_and_reads_as_0()
    {
        var at = new DateTimeOffset(2026, 12, 6, 8, 0, 0, TimeSpan.Zero);
        UsageMetered Usage(string id, TokenCounts tokens) => new(id, "acme", [], tokens, 13.5m, at, at, 13.5m, 0.1m, 2500, at);
        var unspilled = new UsageBatchMetered([Usage("dep-1", new TokenCounts(1, 10, 0, 3, 0, 0, 0, 0)), Usage("dep-2", new TokenCounts(2, 20, 0, 6, 0, 0, 0, 0))]);
        var spilled = new UsageBatchMetered([Usage("dep-1", new TokenCounts(1, 10, 0, 3, 0, 0, 0, 0)), Usage("dep-2", new TokenCounts(2, 20, 4, 6, 1, 20, 4, 6))]);

        string[] counts = ["records", "promptTokens", "cachedTokens", "outputTokens", "spilledRecords", "spilledPromptTokens", "spilledCachedTokens", "spilledOutputTokens"];
        var left = JsonNode.Parse(JsonSerializer.Serialize(unspilled, Store))!.AsObject();
        Assert.Equal(["outputTokens", "promptTokens", "records"], left.Select(p => p.Key).Intersect(counts).Order());
        Assert.Equal(unspilled.Usage, JsonSerializer.Deserialize<UsageBatchMetered>(left.ToJsonString(), Store)!.Usage, UsageWithoutRanges.Instance);
        var kept = JsonNode.Parse(JsonSerializer.Serialize(spilled, Store))!.AsObject();
        Assert.Equal(counts.Order(), kept.Select(p => p.Key).Intersect(counts).Order());
        Assert.Equal(spilled.Usage, JsonSerializer.Deserialize<UsageBatchMetered>(kept.ToJsonString(), Store)!.Usage, UsageWithoutRanges.Instance);

        left.Remove("records");
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<UsageBatchMetered>(left.ToJsonString(), Store));
    }

    sealed class UsageWithoutRanges : IEqualityComparer<UsageMetered>
    {
        public static readonly UsageWithoutRanges Instance = new();
        public bool Equals(UsageMetered? x, UsageMetered? y) => x is not null && y is not null && x with { Producers = [] } == y with { Producers = [] } && x.Producers.SequenceEqual(y.Producers);
        public int GetHashCode(UsageMetered u) => u.DeploymentId.GetHashCode(StringComparison.Ordinal);
    }

    [Fact]
    public void A_usage_batch_written_as_an_object_per_deployment_still_reads()
    {
        var e = JsonSerializer.Deserialize<UsageBatchMetered>($$"""{"usage": [{{Stored}}]}""", Store)!;

        var usage = Assert.Single(e.Usage);
        Assert.Equal(JsonSerializer.Deserialize<UsageMetered>(Stored, Store)! with { Producers = usage.Producers }, usage);
        Assert.Equal(2, usage.Producers.Count);
    }

    [Fact]
    public void A_usage_batch_whose_columns_differ_in_length_is_refused()
    {
        var json = JsonNode.Parse(JsonSerializer.Serialize(new UsageBatchMetered([new UsageMetered("dep-1", "acme", [], default, 0, default, default, 0, 0, 0, default)]), Store))!;
        json["records"]!.AsArray().Add(1);

        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<UsageBatchMetered>(json.ToJsonString(), Store));
    }

    [Fact]
    public void A_usage_batch_reads_as_buckets_whole_or_without_the_other_columns_and_its_object_form_is_left_to_the_full_read()
    {
        var at = new DateTimeOffset(2026, 12, 6, 8, 0, 0, TimeSpan.Zero);
        var batch = new UsageBatchMetered([
            new UsageMetered("dep-1", "acme", [new ProducerRange("node-1", 1, 2)], new TokenCounts(1, 10, 0, 3, 0, 0, 0, 0), 13.5m, at, at, 13.123456789012345678m, 0.1m, 2500, at),
            new UsageMetered("dep-2", null, [], new TokenCounts(2, 20, 0, 6, 0, 0, 0, 0), 27m, at, at, 27m, 0.2m, 2500, at.AddMilliseconds(1)),
        ]);
        var whole = JsonNode.Parse(JsonSerializer.Serialize(batch, Store))!.AsObject();
        var narrowed = whole.DeepClone().AsObject();
        foreach (var column in UsageBatchMeteredJson.AllButBuckets) narrowed.Remove(column);

        Assert.Equal(new[] { "bucketLevel", "deploymentId", "meteredAt" }, narrowed.Select(p => p.Key).Order());
        foreach (var form in new[] { whole, narrowed })
        {
            List<(string, decimal, DateTimeOffset)> buckets = [];
            using var json = JsonDocument.Parse(form.ToJsonString());
            Assert.True(UsageBatchMeteredJson.ReadBuckets(json.RootElement, buckets));
            Assert.Equal(batch.Usage.Select(u => (u.DeploymentId, u.BucketLevel, u.MeteredAt)), buckets);
        }
        using (var objects = JsonDocument.Parse($$"""{"usage": [{{Stored}}]}"""))
            Assert.False(UsageBatchMeteredJson.ReadBuckets(objects.RootElement, []));
        using var empty = JsonDocument.Parse(JsonSerializer.Serialize(new UsageBatchMetered([]), Store));
        Assert.True(UsageBatchMeteredJson.ReadBuckets(empty.RootElement, []));
    }
}
