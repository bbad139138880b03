using System.Globalization;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Capacity;
using Throughput.Flywheel.Load;
using Throughput.Flywheel.Report;
using Throughput.Serving;

namespace Throughput.Flywheel.Demo;

/// <summary>One adapter's usage: as the batcher served and metered it, or as the platform counted it.</summary>
public readonly record struct AdapterTokens(long Records, long PromptTokens, long CachedTokens, long OutputTokens)
{
    public static AdapterTokens operator +(AdapterTokens a, AdapterTokens b) =>
        new(a.Records + b.Records, a.PromptTokens + b.PromptTokens, a.CachedTokens + b.CachedTokens, a.OutputTokens + b.OutputTokens);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Records:N0} records, {PromptTokens:N0} prompt, {CachedTokens:N0} cached, {OutputTokens:N0} output tokens");
}

/// <summary>
/// The platform's usage of the set against what the batcher metered: the set's totals, the sum of its adapters' rows, how
/// many adapters have a row, and how many rows differ from what the batcher metered for that adapter.
/// </summary>
public sealed record UsageCheck(AdapterTokens Served, AdapterTokens SetTotals, AdapterTokens SumOfAdapters, int AdaptersServed, int AdaptersWithUsage, int AdaptersDiffering)
{
    public bool Exact => SetTotals == Served && SumOfAdapters == SetTotals && AdaptersWithUsage == AdaptersServed && AdaptersDiffering == 0;
}

/// <summary>The same fleet and load on a simulated clock with the load spread over <see cref="AdaptersInUse"/> adapters.</summary>
public sealed record SpreadTrial(int AdaptersInUse, LoadTrial Trial);

/// <summary>What an adapter run measured.</summary>
public sealed record AdapterResult(
    int Adapters, decimal Ptu, long TokensPerMinute, IReadOnlyList<WindowRow> Windows, SteadyState Steady, Latencies Latencies,
    long ColdLoads, long Evictions, UsageCheck Usage, IReadOnlyList<SpreadTrial> Spread);

/// <summary>
/// The reference batcher serving one adapter set: a tenant registers the adapters and buys one set of all of them through
/// the customer API, sized to a share of the fleet's calibrated capacity; the Flywheel fleet serves a Zipf-skewed load over
/// them in real time, admitted through the serving SDK's <see cref="AdmissionCache"/> and metered with each record's adapter
/// through its <see cref="MeteringPublisher"/>. Prints the set's windows against its purchased rate, the cold loads, the
/// platform's per-adapter usage against the set's, and time per output token with the same load spread over 1, 10, 100
/// and 1,000 adapters (simulated clock, the same fleet and rate).
/// </summary>
public static class AdapterRun
{
    public static async Task<AdapterResult> RunAsync(
        AdapterOptions options, string operatorKey, Func<string, HttpClient> clientFor, Uri broker, TextWriter output, CancellationToken ct)
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        var op = clientFor(operatorKey);
        var producerId = $"flywheel-lora-{run}";
        var fleet = options.Fleet;
        var workload = options.Workload;

        var rates = await PlatformSetup.ModelRatesAsync(op, options.Model, ct);
        var calibration = Calibration.Run(fleet, [new MixShare(workload, 1)], rates, options.Model);
        var capacity = calibration.SellablePtu * fleet.Nodes;
        var ptu = Math.Floor(capacity * options.Sell * 10) / 10;
        var cost = fleet.Cost ?? IterationCost.MistralOnA100;
        output.WriteLine($"GPU: {cost.Model.Name} on {calibration.GpuKind}, Flywheel budget {fleet.TokenBudget}: {calibration.SellablePtu} PTU of {options.Model} per GPU for " +
                         $"{workload.Name} (~{workload.PromptTokens} prompt / {workload.OutputTokens} generated) without adapters (calibrated now); fleet {fleet.Nodes} GPUs = {capacity} PTU");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"adapters: rank {cost.AdapterRank}, {cost.AdapterBytes / 1e6:0.0} MB each; a node holds {fleet.AdapterSlots} ({fleet.AdapterSlots * cost.AdapterBytes / 1e9:0.0} GB), least recently used evicted; " +
            $"a cold one costs its first iteration {cost.LoadTime(1).TotalMilliseconds:0.00} ms over the host link ({cost.Gpu.HostLinkBytesPerSecond / 1e9:0} GB/s)"));

        await PlatformSetup.EnsurePoolAsync(op, options.Model, options.Region, ptu, ct);
        var node = await PlatformSetup.RegisterServingNodeAsync(op, producerId, options.Region, ct);
        broker = node.Broker(broker);
        string[] adapters = [.. Enumerable.Range(0, options.Adapters).Select(i => $"ft-{i:D4}")];
        var customer = new Customer("Adapter Tenant", workload, ptu);
        var set = await PlatformSetup.ProvisionAdapterSetAsync(op, clientFor, customer, adapters, options.Model, options.Region, run, ct);

        var cache = new AdmissionCache(new AdmissionCacheOptions { BurstShare = DemoRun.BurstShare(options.Sell) });
        await using var feed = await AdmissionFeed.StartAsync(cache, clientFor(node.ApiKey), new AdmissionFeedOptions(broker) { Region = options.Region, Model = options.Model }, ct);
        var limit = (await DemoRun.KnownLimitsAsync(feed, [set], ct))[set.DeploymentId];
        await using var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(broker, producerId) { Exchange = options.MeteringExchange }, ct);
        output.WriteLine($"bought through the API: one adapter set {set.DeploymentId} of {adapters.Length:N0} adapters, {ptu} PTU ({options.Sell:P0} of the fleet) = {limit.TokensPerMinute:N0} weighted tokens/min, " +
                         $"one bucket; load Zipf {options.Zipf} over the adapters, a backlog of 1.5 min of the rate, then 1.5× the rate; run {run}");

        var clock = TimeProvider.System;
        var start = clock.GetUtcNow();
        var end = start + options.Duration;
        var tally = new Tally(start, TimeSpan.FromSeconds(1));
        var track = tally.Follow(set.DeploymentId, "adapter set", (double)limit.OutputWeight, (double)limit.CachedDeduction);
        track.Limit(start, limit.TokensPerMinute, limit.State);
        var arrivals = new Arrivals(set.DeploymentId, workload, limit.TokensPerMinute * 1.5, limit.TokensPerMinute * 1.5, (double)limit.OutputWeight, (double)limit.CachedDeduction, start, seed: 0)
        {
            Adapters = new AdapterPopularity(adapters, options.Zipf, seed: 1),
        };
        var simulation = new Simulation(new Fleet(fleet, cache), tally, [arrivals]);
        var served = new Dictionary<string, AdapterTokens>(StringComparer.Ordinal);
        var inUse = new HashSet<string>(StringComparer.Ordinal);

        output.WriteLine();
        output.WriteLine("per window: served weighted tokens ÷ purchased, requests refused for now (429s), distinct adapters admitted, cold loads in the window, mean ms per output token");
        var tick = TimeSpan.FromMilliseconds(10);
        var next = start;
        var nextWindow = 1;
        long loadsBefore = 0;
        while (next < end)
        {
            var now = clock.GetUtcNow();
            if (next > now) await Task.Delay(next - now, clock, ct);
            var step = simulation.Step(next);
            foreach (var sequence in step.Admitted) inUse.Add(sequence.Request.AdapterId!);
            foreach (var sequence in step.Finished)
            {
                await publisher.RecordAsync(DemoRun.Metered(producerId, sequence), ct);
                var request = sequence.Request;
                served[request.AdapterId!] = served.GetValueOrDefault(request.AdapterId!) + new AdapterTokens(1, request.PromptTokens, request.CachedTokens, sequence.Generated);
            }
            next += tick;
            if (next >= start + options.Window * nextWindow)
            {
                var row = WindowReport.Row(tally, track, nextWindow - 1, options.Window);
                var loads = Loads(simulation.Fleet);
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {WindowTable.Clock(row.From)}–{WindowTable.Clock(row.To)}  ratio {row.Ratio:0.000}  429s {row.Refusals,5:N0}  adapters {inUse.Count,5:N0}  cold loads {loads - loadsBefore,5:N0}  ms/tok {row.TpotMs,5:0.0}"));
                loadsBefore = loads;
                inUse.Clear();
                nextWindow++;
            }
        }
        await publisher.FlushAsync(ct).WaitAsync(TimeSpan.FromSeconds(30), ct);

        var windows = WindowReport.Of(tally, track, options.Window, end);
        var steady = WindowReport.Steady(tally, track, options.Window, end);
        var latencies = track.LatenciesWithin(steady.Windows.Select(w => (start + w.From, start + w.To)));
        var coldLoads = Loads(simulation.Fleet);
        var evictions = simulation.Fleet.Nodes.Sum(n => n.Adapters?.Evictions ?? 0);
        output.WriteLine();
        output.WriteLine(steady.Windows.Count == 0
            ? "the set: no steady window (backlogged, burst spent, three request lifetimes on): run longer or shorten outputs"
            : string.Create(CultureInfo.InvariantCulture,
                $"the set: served ÷ purchased {steady.Ratio:0.000} over {steady.Windows.Count} steady windows (each {steady.Windows.Min(w => w.Ratio):0.000}–{steady.Windows.Max(w => w.Ratio):0.000}); " +
                $"time per output token p50 {latencies.TpotP50.TotalMilliseconds:0.0} ms, p99 {latencies.TpotP99.TotalMilliseconds:0.0} ms; {served.Count:N0} adapters served; " +
                $"{coldLoads:N0} cold loads, {evictions:N0} evictions"));

        var usage = await CheckUsageAsync(set, served, start, output, ct);

        output.WriteLine();
        output.WriteLine($"time per output token with the set's rate spread over more adapters: the same fleet, rate and load on a simulated clock (90 s warm-up, 120 s measured), Zipf {options.Zipf}");
        var spread = new List<SpreadTrial>();
        foreach (var k in options.SpreadCounts)
        {
            var trial = Calibration.Offer(fleet, [new MixShare(workload, 1)], rates, limit.TokensPerMinute, TimeSpan.FromSeconds(90), TimeSpan.FromSeconds(120),
                _ => new AdapterPopularity(adapters[..k], options.Zipf, seed: 1));
            spread.Add(new SpreadTrial(k, trial));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {k,5:N0} adapters: TPOT p50 {trial.TpotP50.TotalMilliseconds:0.0} ms, p99 {trial.TpotP99.TotalMilliseconds:0.0} ms; served ÷ purchased {trial.WorstServedRatio:0.000}; {trial.AdapterLoads:N0} cold loads"));
        }

        if (!options.Keep) await PlatformSetup.ReleaseAsync(set, ct);
        return new AdapterResult(adapters.Length, ptu, limit.TokensPerMinute, windows, steady, latencies, coldLoads, evictions, usage, spread);
    }

    static long Loads(Fleet fleet) => fleet.Nodes.Sum(n => n.Adapters?.Loads ?? 0);

    /// <summary>
    /// Waits until the platform has counted every record the batcher metered (the set's totals at once, the per-adapter read
    /// model a moment later, as it is folded asynchronously), then compares each adapter's row with what the batcher metered.
    /// </summary>
    static async Task<UsageCheck> CheckUsageAsync(Provisioned set, Dictionary<string, AdapterTokens> served, DateTimeOffset start, TextWriter output, CancellationToken ct)
    {
        var metered = served.Values.Aggregate(default(AdapterTokens), (a, b) => a + b);
        var month = start.ToString("yyyy-MM", CultureInfo.InvariantCulture);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        AdapterTokens totals, sum;
        Dictionary<string, AdapterTokens> rows;
        while (true)
        {
            var t = await PlatformSetup.TotalsAsync(set, ct);
            totals = new AdapterTokens(t.GetProperty("records").GetInt64(), t.GetProperty("promptTokens").GetInt64(), t.GetProperty("cachedTokens").GetInt64(), t.GetProperty("outputTokens").GetInt64());
            rows = (await PlatformSetup.AdapterUsageAsync(set, month, ct)).EnumerateArray().ToDictionary(
                r => r.GetProperty("adapterId").GetString()!,
                r => new AdapterTokens(r.GetProperty("records").GetInt64(), r.GetProperty("promptTokens").GetInt64(), r.GetProperty("cachedTokens").GetInt64(), r.GetProperty("outputTokens").GetInt64()));
            sum = rows.Values.Aggregate(default(AdapterTokens), (a, b) => a + b);
            if ((totals.Records >= metered.Records && sum.Records >= totals.Records) || DateTime.UtcNow > deadline) break;
            await Task.Delay(500, ct);
        }
        var differing = served.Count(a => rows.GetValueOrDefault(a.Key) != a.Value) + rows.Keys.Count(a => !served.ContainsKey(a));
        var check = new UsageCheck(metered, totals, sum, served.Count, rows.Count, differing);
        output.WriteLine($"metering: the batcher metered {metered}");
        output.WriteLine($"  the platform's set totals (GET /v1/deployments/{{id}}/usage/totals): {totals}");
        output.WriteLine($"  the sum of its {rows.Count:N0} adapters' rows (GET /v1/deployments/{{id}}/usage/adapters?month={month}): {sum}");
        output.WriteLine($"  adapters whose row differs from what the batcher metered for it: {differing:N0} — {(check.Exact ? "exact" : "NOT EXACT")}");
        return check;
    }
}
