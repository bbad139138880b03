using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;
using Throughput.Flywheel.Report;
using Throughput.Serving;

namespace Throughput.Flywheel.Capacity;

/// <summary>One traffic profile of a mix and its share of the mix's weighted tokens (shares are relative: they need not sum to one).</summary>
public sealed record MixShare(Workload Workload, double Share);

/// <summary>A model's pricing units as the catalog states them: weighted tokens per minute per PTU, output weight, cached deduction.</summary>
public sealed record ModelRates(double TokensPerMinutePerPtu, double OutputWeight, double CachedDeduction)
{
    /// <summary>gpt-4o-mini in the platform's catalog.</summary>
    public static readonly ModelRates Gpt4oMini = new(37_000, 4, 1);
}

/// <summary>How one load level went: served ÷ purchased of the worst profile, and the time per output token of the requests.</summary>
public sealed record LoadTrial(double WeightedPerMinute, double WorstServedRatio, TimeSpan TpotP50, TimeSpan TpotP99)
{
    public bool Holds => WorstServedRatio >= 0.99 && TpotP99 <= TpotP50 * 1.5;

    /// <summary>Cold adapters the nodes loaded, when the profiles run on adapters.</summary>
    public long AdapterLoads { get; init; }
}

/// <summary>What one GPU of a kind can be sold for: the largest load it serves in full, with its trials.</summary>
public sealed record CalibrationResult(string GpuKind, string Model, double WeightedPerMinute, decimal SellablePtu, IReadOnlyList<LoadTrial> Trials);

/// <summary>
/// Capacity from the batcher: one GPU running the Flywheel scheduler, offered a mix of traffic at purchased rates through
/// the serving SDK's admission (each profile backlogged, so admission is what paces it), on a simulated clock. A load level
/// holds when every profile is served at least 99 % of its purchased rate over the measured span and the 99th percentile
/// of the requests' time per output token (TPOT: each request's mean time between its tokens) stays within 1.5× the median; the sellable PTUs per GPU are the largest load that holds, in the
/// model's weighted tokens per minute per PTU, rounded down to a tenth. Pure: the same inputs give the same figure.
/// </summary>
public static class Calibration
{
    static readonly DateTimeOffset Epoch = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static CalibrationResult Run(FleetOptions gpu, IReadOnlyList<MixShare> mix, ModelRates rates, string model, TimeSpan? warmup = null, TimeSpan? measured = null)
    {
        var node = gpu with { Nodes = 1 };
        var trials = new List<LoadTrial>();
        // The ceiling: every iteration a full budget of the cheapest kind of token, output, at its weight.
        var full = node.Duration(new IterationWork().AddChunk(node.TokenBudget, 0));
        double low = 0, high = node.TokenBudget / full.TotalMinutes * Math.Max(1, rates.OutputWeight);
        var floor = high / 64; // below this a profile's rate is a few requests a minute and a window holds too few to measure
        for (var i = 0; i < 14; i++)
        {
            var load = (low + high) / 2;
            var trial = Offer(node, mix, rates, load, warmup ?? TimeSpan.FromSeconds(90), measured ?? TimeSpan.FromSeconds(120));
            trials.Add(trial);
            if (trial.Holds || load < floor) low = load;
            else high = load;
        }
        var sellable = Math.Floor((decimal)(low / rates.TokensPerMinutePerPtu) * 10) / 10;
        return new CalibrationResult(gpu.Cost?.Gpu.Name ?? "fixed", model, low, sellable, trials);
    }

    /// <summary>Runs <paramref name="gpu"/> with the mix purchased at <paramref name="weightedPerMinute"/> in all, backlogged.</summary>
    /// <param name="adapters">The adapters each profile's requests run on (by the profile's index); none when null.</param>
    public static LoadTrial Offer(
        FleetOptions gpu, IReadOnlyList<MixShare> mix, ModelRates rates, double weightedPerMinute, TimeSpan warmup, TimeSpan measured, Func<int, AdapterPopularity>? adapters = null)
    {
        var clock = new SimulatedClock(Epoch);
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = clock });
        var tally = new Tally(Epoch, TimeSpan.FromSeconds(1));
        var arrivals = new List<Arrivals>();
        var shares = mix.Sum(s => s.Share);
        foreach (var (share, n) in mix.Select((s, n) => (s, n)))
        {
            var id = $"profile-{n}";
            var rate = (long)Math.Max(1, weightedPerMinute * share.Share / shares);
            // A burst of ten seconds, spent in the warm-up: the calibration measures the rate, not the opening allowance.
            cache.Apply(new AdmissionLimitChanged(id, "calibration", "m", "r", AdmissionState.Open, rate, Math.Max(1, rate / 6), 0, 0, false,
                (decimal)rates.OutputWeight, (decimal)rates.CachedDeduction, 1, Epoch));
            tally.Follow(id, share.Workload.Name, rates.OutputWeight, rates.CachedDeduction).Limit(Epoch, rate, AdmissionState.Open);
            arrivals.Add(new Arrivals(id, share.Workload, rate * 1.2, backlogTokens: rate, rates.OutputWeight, rates.CachedDeduction, Epoch, seed: n) { Adapters = adapters?.Invoke(n) });
        }
        var fleet = new Fleet(gpu, cache);
        var step = TimeSpan.FromMilliseconds(10);
        var end = Epoch + warmup + measured;
        for (var at = Epoch; at < end; at += step)
        {
            clock.Advance(at - clock.GetUtcNow());
            foreach (var source in arrivals)
            {
                foreach (var request in source.Until(at)) fleet.Enqueue(request);
            }
            tally.Record(fleet.Step(at));
        }
        var from = Epoch + warmup;
        var worst = tally.Tracks.Min(t => t.Sum(from, end).Weighted / t.PurchasedBetween(from, end));
        var latencies = Latencies.Of([.. tally.Tracks.SelectMany(t => t.Finished).Where(r => r.FinishedAt >= from)]);
        return new LoadTrial(weightedPerMinute, worst, latencies.TpotP50, latencies.TpotP99) { AdapterLoads = fleet.Nodes.Sum(n => n.Adapters?.Loads ?? 0) };
    }
}
