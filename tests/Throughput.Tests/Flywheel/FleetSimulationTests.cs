using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Capacity;
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
        scenario = scenario with
        {
            Customers =
            [
                new("Contoso Docs", Workload.DocumentCreation, Ptu: 20m),
                new("Fabrikam Digest", Workload.Summarization, Ptu: 40m),
                new("Northwind Chat", Workload.Chat, Ptu: 15m, RaisedPtu: 30m, OfferedFactor: 3),
            ],
        };
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

/// <summary>
/// The demo's two fleets in virtual time with the cost model: the same customers, sized to the calibrated fleet, served by
/// the Flywheel scheduler and by whole-prompt batching.
/// </summary>
public sealed class SchedulerComparisonTests(ITestOutputHelper output)
{
    static readonly DateTimeOffset Start = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void On_the_same_load_Flywheel_holds_every_rate_at_a_steady_time_per_token_and_whole_prompt_batching_has_a_worse_tail()
    {
        var options = DemoOptions.Parse(["--minutes", Environment.GetEnvironmentVariable("SIM_MINUTES") ?? "2", "--window", Environment.GetEnvironmentVariable("SIM_WINDOW") ?? "10s", "--output-scale", Environment.GetEnvironmentVariable("SIM_SCALE") ?? "0.2", "--sell", Environment.GetEnvironmentVariable("SIM_SELL") ?? "0.9"]);
        var scenario = options.Scenario;
        var calibration = Calibration.Run(options.Fleet, scenario.Mix, ModelRates.Gpt4oMini, "gpt-4o-mini");
        var customers = scenario.SizedFor(calibration.SellablePtu * options.Fleet.Nodes);

        var burstShare = DemoRun.BurstShare(customers.Sum(c => c.Ptu) / (calibration.SellablePtu * options.Fleet.Nodes));
        var flywheel = Serve(options.Fleet, customers, scenario, burstShare);
        var whole = Serve(options.Fleet with { Scheduling = Scheduling.WholePrompt, TokenBudget = DemoOptions.WholePromptBatch }, customers, scenario, burstShare);

        var end = Start + scenario.Duration;
        foreach (var (name, tally) in new[] { ("fly", flywheel), ("whole", whole) })
        {
            foreach (var track in tally.Tracks)
            {
                foreach (var row in WindowReport.Of(tally, track, scenario.Window, end))
                    output.WriteLine($"{name,-5} {row.Name,-16} {row.From,8} {row.Weighted,10:N0} {row.Purchased,10:N0} {row.Ratio,6:F3} steady={row.Steady} 429s={row.Refusals} ttft={row.TtftMs:F0} ms/tok={row.TpotMs:F1}");
            }
        }
        var (fly, wholePrompt) = Comparison.Of(flywheel, whole, scenario.Window, end);
        foreach (var (f, w) in fly.Zip(wholePrompt))
        {
            output.WriteLine($"{f.Name}: fly {f.Steady.Ratio:F4} over {f.Steady.Windows.Count} windows, tpot {f.Latencies.TpotP50.TotalMilliseconds}/{f.Latencies.TpotP99.TotalMilliseconds} ms, ttft {f.Latencies.TtftP50.TotalMilliseconds}/{f.Latencies.TtftP99.TotalMilliseconds}; " +
                             $"whole {w.Steady.Ratio:F4}, tpot {w.Latencies.TpotP50.TotalMilliseconds}/{w.Latencies.TpotP99.TotalMilliseconds} ms, ttft {w.Latencies.TtftP50.TotalMilliseconds}/{w.Latencies.TtftP99.TotalMilliseconds}");
            Assert.True(f.Steady.Windows.Count >= 2, $"{f.Name}: {f.Steady.Windows.Count} steady windows");
            Assert.InRange(f.Steady.Ratio, 0.98, 1.02);
            Assert.True(f.Latencies.TpotP99 <= f.Latencies.TpotP50 * 1.5, $"{f.Name}: Flywheel time per output token p99 {f.Latencies.TpotP99} against p50 {f.Latencies.TpotP50}");
            Assert.True(w.Latencies.TpotP99 > f.Latencies.TpotP99 * 1.2, $"{f.Name}: whole-prompt p99 {w.Latencies.TpotP99} against Flywheel's {f.Latencies.TpotP99}");
        }
    }

    static Tally Serve(FleetOptions fleet, IReadOnlyList<Customer> customers, Scenario scenario, double burstShare)
    {
        var clock = new SimulatedClock(Start);
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = clock, BurstShare = burstShare });
        var tally = new Tally(Start, TimeSpan.FromSeconds(1));
        var arrivals = new List<Arrivals>();
        foreach (var (customer, n) in customers.Select((c, n) => (c, n)))
        {
            var rate = (long)(customer.Ptu * 37_000);
            cache.Apply(new AdmissionLimitChanged($"dep-{n}", "t", "gpt-4o-mini", "r", AdmissionState.Open, rate, rate, 0, 0, false, 4, 1, 1, Start));
            tally.Follow($"dep-{n}", customer.Name, 4, 1).Limit(Start, rate, AdmissionState.Open);
            arrivals.Add(new Arrivals($"dep-{n}", customer.Workload, rate * customer.OfferedFactor, rate * customer.BacklogMinutes, 4, 1, Start, seed: n));
        }
        var simulation = new Simulation(new Fleet(fleet, cache), tally, arrivals);
        var resized = false;
        for (var at = Start; at < Start + scenario.Duration; at += TimeSpan.FromMilliseconds(10))
        {
            clock.Advance(at - clock.GetUtcNow());
            if (!resized && at >= Start + scenario.EffectiveResizeAt)
            {
                resized = true;
                foreach (var (customer, n) in customers.Select((c, n) => (c, n)).Where(p => p.c.RaisedPtu is not null))
                {
                    var rate = (long)(customer.RaisedPtu!.Value * 37_000);
                    cache.Apply(new AdmissionLimitChanged($"dep-{n}", "t", "gpt-4o-mini", "r", AdmissionState.Open, rate, rate, 0, 0, false, 4, 1, 2, at));
                    tally[$"dep-{n}"].Limit(at, rate, AdmissionState.Open);
                }
            }
            simulation.Step(at);
        }
        return tally;
    }
}
