using Throughput.Flywheel.Demo;
using Xunit.Abstractions;

namespace Throughput.IntegrationTests;

/// <summary>
/// The demo, shortened, in-process against the real platform host, PostgreSQL and RabbitMQ: on the Flywheel fleet each
/// backlogged customer is served its purchased rate with predictable time per token, the one that buys more is served more
/// at once, and the same load batched by whole prompts gets a worse tail; a Global deployment is served from two regions.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class FlywheelDemoTests(PlatformFixture platform, ITestOutputHelper output)
{
    [Fact]
    public async Task With_Flywheel_each_customer_gets_its_purchased_rate_at_a_steady_time_per_token_and_whole_prompt_batching_does_worse()
    {
        // Outputs a fifth as long (prompts whole), so that three request lifetimes after the burst fit a two-minute run.
        var options = DemoOptions.Parse(["--minutes", "2", "--window", "10s", "--output-scale", "0.2", "--out", Path.Combine(Path.GetTempPath(), "throughput-demo-test")]);
        options = options with { Scenario = options.Scenario with { Region = "r" + Guid.NewGuid().ToString("N")[..10] }, MeteringExchange = platform.MeteringExchange };
        using var printed = new StringWriter();

        DemoResult result;
        try
        {
            result = await DemoRun.RunAsync(options, PlatformFixture.OperatorKey, key => platform.PatientClient(key), platform.Settings.RabbitUri, printed, CancellationToken.None);
        }
        finally
        {
            output.WriteLine(printed.ToString());
        }

        Assert.InRange(result.SoldShare, 0.89m, 0.91m); // customers buy 90 % of the calibrated fleet, 95 % after the raise
        foreach (var (flywheel, whole) in result.Flywheel.Customers.Zip(result.WholePrompt.Customers))
        {
            Assert.True(flywheel.Steady.Windows.Count >= 2, $"{flywheel.Name} has {flywheel.Steady.Windows.Count} steady windows");
            // The measure: weighted tokens per minute over the steady state, within ±2% of the purchased rate.
            Assert.InRange(flywheel.Steady.Ratio, 0.98, 1.02);
            // A 10 s window is cut at each end mid-request and sees the scheduler's jitter: the issue's ±10% (#17).
            Assert.All(flywheel.Steady.Windows, w => Assert.InRange(w.Ratio, 0.90, 1.10));
            var (fly, batch) = (flywheel.Latencies, whole.Latencies);
            Assert.True(fly.TpotP99 <= fly.TpotP50 * 1.5, $"{flywheel.Name}: Flywheel time per output token p99 {fly.TpotP99}, p50 {fly.TpotP50}");
            Assert.True(batch.TpotP99 > fly.TpotP99 * 1.2, $"{flywheel.Name}: whole-prompt time per output token p99 {batch.TpotP99}, Flywheel's {fly.TpotP99}");
        }
        var rise = Assert.Single(result.Flywheel.Rises);
        Assert.NotNull(rise.FirstWindow);
        Assert.True(rise.FirstWindow.WeightedPerMinute >= rise.FromTokensPerMinute + 0.8 * (rise.ToTokensPerMinute - rise.FromTokensPerMinute),
            $"first window after the raise served {rise.FirstWindow.WeightedPerMinute:N0}/min; the rate went from {rise.FromTokensPerMinute:N0} to {rise.ToTokensPerMinute:N0}");
        // The Global deployment: a serving node in each region served it within its leased share, and metering was exact.
        Assert.Equal(["eastus", "eastus2"], result.Global.Served.Select(s => s.Region));
        Assert.All(result.Global.Served, s => Assert.True(s.Weighted > 0, $"nothing served from {s.Region}"));
        Assert.Equal(result.Global.Published, result.Global.Metered);
        Assert.True(result.Global.MeteringMatched, "the platform metered every request of the Global deployment, from both regions");
        Assert.True(result.MeteringMatched, "the platform metered every request the batcher served");
        Assert.True(File.Exists(result.ChartPath));
    }
}
