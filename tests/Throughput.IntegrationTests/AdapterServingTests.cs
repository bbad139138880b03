using Throughput.Flywheel.Demo;
using Xunit.Abstractions;

namespace Throughput.IntegrationTests;

/// <summary>
/// The reference batcher serving one adapter set, in-process against the real platform host, PostgreSQL and RabbitMQ: the
/// set is bought through the customer API, its adapters' usage as the platform counts it adds up exactly to the set's and
/// to what the batcher metered for each, and the set is held to its purchased rate.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class AdapterServingTests(PlatformFixture platform, ITestOutputHelper output)
{
    [Fact]
    public async Task A_set_of_50_adapters_served_by_the_batcher_has_per_adapter_usage_summing_to_the_sets_and_is_held_to_its_rate()
    {
        // Outputs a fifth as long, so that three request lifetimes after the burst leave whole steady windows in two minutes.
        var options = AdapterOptions.Parse(["--adapters", "50", "--window", "10s", "--output-scale", "0.2"]) with
        {
            Duration = TimeSpan.FromSeconds(120),
            Region = "r" + Guid.NewGuid().ToString("N")[..10],
            MeteringExchange = platform.MeteringExchange,
        };
        using var printed = new StringWriter();

        AdapterResult result;
        try
        {
            result = await AdapterRun.RunAsync(options, PlatformFixture.OperatorKey, key => platform.PatientClient(key), platform.Settings.RabbitUri, printed, CancellationToken.None);
        }
        finally
        {
            output.WriteLine(printed.ToString());
        }

        var usage = result.Usage;
        Assert.True(usage.Served.Records > 0);
        Assert.Equal(usage.Served, usage.SetTotals); // every record the batcher metered, counted once
        Assert.Equal(usage.SetTotals, usage.SumOfAdapters); // the adapters' rows add up to the set's
        Assert.Equal(usage.AdaptersServed, usage.AdaptersWithUsage);
        Assert.Equal(0, usage.AdaptersDiffering); // and each is what the batcher metered for that adapter
        Assert.True(usage.AdaptersServed >= 40, $"{usage.AdaptersServed} of 50 adapters served"); // Zipf 1 over 50: the rarest is asked 1 in 225

        // Held to its rate: over whole windows once steady, the demo's bounds (#17).
        Assert.True(result.Steady.Windows.Count >= 2, $"{result.Steady.Windows.Count} steady windows");
        Assert.InRange(result.Steady.Ratio, 0.98, 1.02);
        Assert.All(result.Steady.Windows, w => Assert.InRange(w.Ratio, 0.90, 1.10));

        // 50 adapters fit every node's 256 slots: each node loads an adapter once, the first time it serves it.
        Assert.Equal(0, result.Evictions);
        Assert.InRange(result.ColdLoads, usage.AdaptersServed, usage.AdaptersServed * options.Fleet.Nodes);

        // Time per output token does not depend on how many adapters share the rate (simulated clock, the same load).
        var one = result.Spread[0];
        Assert.Equal([1, 10, 50], result.Spread.Select(s => s.AdaptersInUse));
        Assert.All(result.Spread, s =>
        {
            Assert.InRange(s.Trial.TpotP50 / one.Trial.TpotP50, 0.97, 1.03);
            Assert.True(s.Trial.TpotP99 <= s.Trial.TpotP50 * 1.5, $"{s.AdaptersInUse} adapters: p99 {s.Trial.TpotP99}, p50 {s.Trial.TpotP50}");
        });
    }
}
