using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Demo;
using Throughput.Flywheel.Load;
using Throughput.Flywheel.Report;
using Throughput.Serving;
using Throughput.Tests.Serving;
using Xunit.Abstractions;

namespace Throughput.Tests.Flywheel;

/// <summary>The demo's scenario in virtual time: the batcher, the admission cache and the tally, without the platform.</summary>
public sealed class FleetSimulationTests(ITestOutputHelper output)
{
    const long TokensPerMinutePerPtu = 37_000;

    readonly ManualClock _clock = new();

    static AdmissionLimitChanged Limit(string deploymentId, decimal ptu, long version) =>
        new(deploymentId, "t", "gpt-4o-mini", "eastus", AdmissionState.Open, (long)(ptu * TokensPerMinutePerPtu), (long)(ptu * TokensPerMinutePerPtu), 0, 0, false, 4, 1, version, DateTimeOffset.UnixEpoch);

    (Simulation Simulation, AdmissionCache Cache) Build(Scenario scenario, FleetOptions fleetOptions)
    {
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = _clock });
        var start = _clock.GetUtcNow();
        var tally = new Tally(start, TimeSpan.FromSeconds(1));
        var arrivals = new List<Arrivals>();
        foreach (var (customer, n) in scenario.Customers.Select((c, n) => (c, n)))
        {
            var id = $"dep-{n}";
            var limit = Limit(id, customer.Ptu, 1);
            cache.Apply(limit);
            tally.Follow(id, customer.Name, 4, 1).Limit(start, limit.TokensPerMinute, AdmissionState.Open);
            arrivals.Add(new Arrivals(id, customer.Workload, limit.TokensPerMinute * customer.OfferedFactor, limit.TokensPerMinute * customer.BacklogMinutes, 4, 1, start, seed: n));
        }
        return (new Simulation(new Fleet(fleetOptions, cache), tally, arrivals), cache);
    }

    void Run(Simulation simulation, AdmissionCache cache, Scenario scenario, FleetOptions fleet)
    {
        var start = _clock.GetUtcNow();
        var resized = false;
        while (_clock.GetUtcNow() < start + scenario.Duration)
        {
            var now = _clock.GetUtcNow();
            if (!resized && now >= start + scenario.EffectiveResizeAt)
            {
                resized = true;
                foreach (var (customer, n) in scenario.Customers.Select((c, n) => (c, n)).Where(p => p.c.RaisedPtu is not null))
                {
                    var limit = Limit($"dep-{n}", customer.RaisedPtu!.Value, 2);
                    cache.Apply(limit);
                    simulation.Tally[$"dep-{n}"].Limit(now, limit.TokensPerMinute, AdmissionState.Open);
                }
            }
            simulation.Step(now);
            _clock.Advance(fleet.IterationTime);
        }
    }

    [Theory]
    [InlineData(60, 300, 25)]
    [InlineData(10, 90, 10)]
    public void Every_backlogged_customer_is_served_its_purchased_rate_in_steady_state_and_a_raised_one_rises_at_once(int windowSeconds, int seconds, int iterationMs)
    {
        var scenario = new Scenario { Duration = TimeSpan.FromSeconds(seconds), Window = TimeSpan.FromSeconds(windowSeconds) };
        var fleet = new FleetOptions { IterationTime = TimeSpan.FromMilliseconds(iterationMs) };
        var (simulation, cache) = Build(scenario, fleet);

        Run(simulation, cache, scenario, fleet);

        var end = simulation.Tally.Start + scenario.Duration;
        foreach (var track in simulation.Tally.Tracks)
        {
            foreach (var row in WindowReport.Of(simulation.Tally, track, scenario.Window, end))
                output.WriteLine($"{row.Name,-16} {row.From,8} {row.Weighted,12:N0} {row.Purchased,12:N0} {row.Ratio,6:F3} steady={row.Steady} refusals={row.Refusals} ms/tok={row.TpotMs:F1} longest={track.LongestRequest}");
            var steady = WindowReport.Steady(simulation.Tally, track, scenario.Window, end);
            output.WriteLine($"{track.Name}: steady ratio {steady.Ratio:F4} over {steady.Windows.Count} windows");
            Assert.NotEmpty(steady.Windows);
            Assert.All(steady.Windows, w => Assert.InRange(w.Ratio, 0.98, 1.02));
        }
        output.WriteLine($"GPU {simulation.Tally.GpuUtilization(simulation.Tally.Start, end):P1}");
        var rise = Assert.Single(WindowReport.Rises(simulation.Tally, simulation.Tally["dep-2"], scenario.Window, end));
        output.WriteLine($"rise: {rise}");
        Assert.NotNull(rise.FirstWindow);
        Assert.True(rise.FirstWindow.WeightedPerMinute > rise.FromTokensPerMinute * 1.5);
    }
}
