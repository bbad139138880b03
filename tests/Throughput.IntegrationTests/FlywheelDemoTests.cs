using Throughput.Flywheel.Demo;
using Xunit.Abstractions;

namespace Throughput.IntegrationTests;

/// <summary>
/// The demo, shortened, in-process against the real platform host, PostgreSQL and RabbitMQ: each backlogged customer is
/// served its purchased rate, and the one that buys more is served more at once.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class FlywheelDemoTests(PlatformFixture platform, ITestOutputHelper output)
{
    [Fact]
    public async Task Each_backlogged_customer_is_served_its_purchased_rate_and_a_raise_shows_in_the_first_window_after_it()
    {
        var options = DemoOptions.Parse(["--minutes", "1.5", "--window", "10s", "--iteration", "10ms", "--out", Path.Combine(Path.GetTempPath(), "throughput-demo-test")]);
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

        Assert.All(result.Steady, customer =>
        {
            Assert.True(customer.Windows.Count >= 2, $"{customer.Name} has {customer.Windows.Count} steady windows");
            // The measure: weighted tokens per minute over the steady state, within ±2% of the purchased rate.
            Assert.InRange(customer.Ratio, 0.98, 1.02);
            // A 10 s window is cut at each end mid-request and sees the scheduler's jitter: the issue's ±10% (#17).
            Assert.All(customer.Windows, w => Assert.InRange(w.Ratio, 0.90, 1.10));
        });
        var rise = Assert.Single(result.Rises);
        Assert.NotNull(rise.FirstWindow);
        Assert.True(rise.FirstWindow.WeightedPerMinute >= 1.5 * rise.FromTokensPerMinute,
            $"first window after the raise served {rise.FirstWindow.WeightedPerMinute:N0}/min, the old rate was {rise.FromTokensPerMinute:N0}");
        Assert.True(result.MeteringMatched, "the platform metered every request the batcher served");
        Assert.True(File.Exists(result.ChartPath));
    }
}
