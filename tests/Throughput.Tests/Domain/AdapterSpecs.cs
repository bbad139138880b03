using System.Globalization;
using System.Text.Json;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Invoicing;
using Throughput.Metering;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

/// <summary>Adapter deployments and sets: which records they bill, their usage per adapter, and their hosting on invoices.</summary>
public sealed class AdapterSpecs
{
    static readonly DeploymentAdapters Set = new(true, new Dictionary<string, decimal?> { ["legal"] = null, ["support"] = 0.25m });

    static Deployment AdapterSet() => DeploymentStream.Given(Created() with { Adapters = Set }).State;

    static MeteredRecord R(long prompt, long output, string? adapter, string finishedAt = "2026-11-22 10:30:00") =>
        new("r", "dep-1", prompt, 0, output, false, 0, Now, At(finishedAt), null, adapter);

    static DateTimeOffset At(string utc) => DateTimeOffset.ParseExact(utc, "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);

    [Fact]
    public void A_base_deployment_holds_no_adapter_and_a_set_exactly_its_own()
    {
        Assert.True(ActiveDeployment().Holds(null));
        Assert.False(ActiveDeployment().Holds("legal"));
        Assert.True(AdapterSet().Holds("legal"));
        Assert.False(AdapterSet().Holds("someone-elses"));
        Assert.False(AdapterSet().Holds(null));
    }

    [Fact]
    public void A_sets_usage_is_one_bucket_and_its_adapters_parts_sum_to_it_per_month()
    {
        var usage = Meter.Decide(AdapterSet(), [new ProducerBatch("node", 1, [R(100, 10, "legal"), R(200, 0, "support"), R(50, 5, "legal"),
            R(7, 1, "support", finishedAt: "2026-12-01 00:00:01")])], At("2026-12-01 00:00:02"))!.Usage;

        Assert.Equal(100 + 40 + 200 + 50 + 20 + 7 + 4, usage.BucketLevel);
        Assert.Equal(
            [new AdapterUsage("legal", "2026-11", new TokenCounts(2, 150, 0, 15, 0, 0, 0, 0), 210), new AdapterUsage("support", "2026-11", new TokenCounts(1, 200, 0, 0, 0, 0, 0, 0), 200),
             new AdapterUsage("support", "2026-12", new TokenCounts(1, 7, 0, 1, 0, 0, 0, 0), 11)],
            usage.Adapters);
        Assert.Equal(usage.Tokens, usage.Adapters!.Aggregate(default(TokenCounts), (sum, a) => sum + a.Tokens));
        Assert.Equal(usage.WeightedTokens, usage.Adapters!.Sum(a => a.WeightedTokens));
    }

    [Fact]
    public void Usage_of_a_base_deployment_has_no_adapter_part_and_its_stored_json_is_unchanged()
    {
        var usage = Meter.Decide(ActiveDeployment(), [new ProducerBatch("node", 1, [R(100, 10, null)])], Now)!.Usage;
        Assert.Null(usage.Adapters);
        Assert.DoesNotContain("adapters", JsonSerializer.Serialize(usage));
    }

    [Fact]
    public void Adapter_usage_survives_the_stored_json()
    {
        var usage = Meter.Decide(AdapterSet(), [new ProducerBatch("node", 1, [R(100, 10, "legal"), R(200, 0, "support")])], Now)!.Usage;
        var read = JsonSerializer.Deserialize<UsageMetered>(JsonSerializer.Serialize(usage))!;
        Assert.Equal(usage.Adapters, read.Adapters);
    }

    [Fact]
    public void A_record_names_its_adapter_in_the_wire_format_and_a_malformed_one_is_refused()
    {
        const string batch = """
            {"version":1,"producerId":"node","sequence":1,"sentAt":"2026-11-22T10:30:00Z","records":[
             {"recordId":"a","deploymentId":"dep-1","requestId":"q","promptTokens":1,"cachedTokens":0,"outputTokens":1,"spilled":false,"estimatedTokens":0,"startedAt":"2026-11-22T10:30:00Z","finishedAt":"2026-11-22T10:30:00Z","adapterId":"legal"},
             {"recordId":"b","deploymentId":"dep-1","requestId":"q","promptTokens":1,"cachedTokens":0,"outputTokens":1,"spilled":false,"estimatedTokens":0,"startedAt":"2026-11-22T10:30:00Z","finishedAt":"2026-11-22T10:30:00Z","adapterId":"no spaces"},
             {"recordId":"c","deploymentId":"dep-1","requestId":"q","promptTokens":1,"cachedTokens":0,"outputTokens":1,"spilled":false,"estimatedTokens":0,"startedAt":"2026-11-22T10:30:00Z","finishedAt":"2026-11-22T10:30:00Z"}]}
            """;
        var records = JsonSerializer.Deserialize<MeteringFrame>(batch)!.Records;
        Assert.Equal(("legal", (string?)null), (records[0].AdapterId, records[0].Problem));
        Assert.Equal("adapterId is malformed", records[1].Problem);
        Assert.Equal((null, null), (records[2].AdapterId, records[2].Problem));
    }

    [Fact]
    public void A_replay_with_another_adapter_conflicts_and_records_without_one_hash_as_before()
    {
        var plain = R(100, 10, null);
        Assert.NotEqual(AppliedBatches.ContentHash([plain with { AdapterId = "legal" }]), AppliedBatches.ContentHash([plain with { AdapterId = "support" }]));
        Assert.NotEqual(AppliedBatches.ContentHash([plain]), AppliedBatches.ContentHash([plain with { AdapterId = "legal" }]));
    }

    static readonly PriceList Usd = new(2.35m, 260m, 2652m, 2.5m, 1.25m, 10m, AdapterPerHour: 0.05m);

    [Fact]
    public void Hosting_is_billed_per_adapter_hour_to_the_second_after_the_provisioned_lines_and_only_for_adapters()
    {
        DeploymentCreated Bought(string id, string at, DeploymentAdapters? adapters) =>
            new(id, "acme", id, "gpt-4o", "eastus", DeploymentType.Global, 1m, 2500, 4, 1, 60, false, "USD", Usd, At(at), adapters);
        var thousand = new DeploymentAdapters(true, Enumerable.Range(0, 1000).ToDictionary(i => $"a{i}", _ => (decimal?)null));
        var account = new[]
        {
            (object)new Throughput.Tenants.TenantCreated("acme", "Acme", "USD", At("2026-01-01 00:00:00")),
            Bought("dep-base", "2026-11-30 20:00:00", null),
            Bought("dep-one", "2026-11-30 20:00:00", new DeploymentAdapters(false, new Dictionary<string, decimal?> { ["legal"] = null })),
            Bought("dep-set", "2026-11-30 22:59:59", thousand),
            new DeploymentReleased("dep-set", 1m, At("2026-11-30 23:30:00")),
        }.Aggregate((BillingAccount?)null, (a, e) => BillingAccount.Fold(a, "acme", e))!;

        var lines = InvoiceCalculation.Compute(account, new BillingMonth(2026, 11), new BillingMonth(2026, 11).End).Lines;

        Assert.Equal(
            [(InvoiceLineKind.Provisioned, "dep-base"), (InvoiceLineKind.Provisioned, "dep-one"), (InvoiceLineKind.AdapterHosting, "dep-one"),
             (InvoiceLineKind.Provisioned, "dep-set"), (InvoiceLineKind.AdapterHosting, "dep-set")],
            lines.Select(l => (l.Kind, l.DeploymentId!)));
        var one = lines[2];
        Assert.Equal((4m, "adapter-hour", 0.05m, 0.20m), (one.Quantity, one.Unit, one.UnitPrice, one.Amount)); // 1 adapter × 14,400 s
        var set = lines[4];
        // 1,000 adapters × 1,801 s (22:59:59 → 23:30:00) × 0.05 / 3600 = 25.0138… → 25.01
        Assert.Equal((500.277778m, 25.01m), (set.Quantity, set.Amount));
        Assert.Equal((At("2026-11-30 22:59:59"), At("2026-11-30 23:30:00")), (set.From!.Value, set.To!.Value));
    }
}
