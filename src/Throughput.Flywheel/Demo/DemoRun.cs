using System.Collections.Concurrent;
using System.Globalization;
using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Capacity;
using Throughput.Flywheel.Load;
using Throughput.Flywheel.Report;
using Throughput.Serving;

namespace Throughput.Flywheel.Demo;

/// <summary>One scheduler's side of the run: its customers' figures and how much of the fleet's calibrated capacity it served.</summary>
public sealed record SideFigures(Scheduling Scheduling, IReadOnlyList<CustomerFigures> Customers, double ServedOfCapacity, IReadOnlyList<RateRise> Rises);

/// <summary>What a demo run measured.</summary>
public sealed record DemoResult(
    CalibrationResult Calibration, decimal SoldShare, IReadOnlyList<SideFigures> Sides, TimeSpan? PushLatency, string ChartPath, GlobalFigures Global, bool MeteringMatched)
{
    public SideFigures Flywheel => Sides.Single(s => s.Scheduling == Scheduling.Flywheel);

    public SideFigures WholePrompt => Sides.Single(s => s.Scheduling == Scheduling.WholePrompt);
}

/// <summary>
/// The demo: calibrates what one GPU can be sold for, sizes the customers to 90 % of the fleet, then serves the same
/// customers' load twice at once in real time — on a fleet running the Flywheel scheduler and on an identical fleet batching
/// whole prompts — each customer with one deployment per fleet, admitted through the serving SDK's
/// <see cref="AdmissionCache"/> and metered through its <see cref="MeteringPublisher"/>. Midway one customer raises its PTUs
/// through the customer API (on both fleets). Prints a table per window and a summary per scheduler, and writes a chart.
/// Beside them a Global deployment is served from two regions of one geography (<see cref="GlobalServing"/>).
/// </summary>
public static class DemoRun
{
    sealed record Side(Scheduling Scheduling, FleetOptions Fleet, List<Provisioned> Customers, Tally Tally, Simulation Simulation);

    public static async Task<DemoResult> RunAsync(
        DemoOptions options, string operatorKey, Func<string, HttpClient> clientFor, Uri broker, TextWriter output, CancellationToken ct)
    {
        var scenario = options.Scenario;
        var run = Guid.NewGuid().ToString("N")[..8];
        var op = clientFor(operatorKey);
        var producerId = $"flywheel-{run}";

        var rates = await PlatformSetup.ModelRatesAsync(op, scenario.Model, ct);
        var calibration = Calibration.Run(options.Fleet, scenario.Mix, rates, scenario.Model);
        var capacity = calibration.SellablePtu * options.Fleet.Nodes;
        var sized = scenario.SizedFor(capacity);
        var sold = sized.Sum(c => c.Ptu);
        var soldAfterRaise = sized.Sum(c => c.RaisedPtu ?? c.Ptu);
        output.WriteLine($"GPU: {options.Fleet.Cost?.Model.Name} on {calibration.GpuKind}; the Flywheel scheduler (token budget {options.Fleet.TokenBudget}) serves " +
                         $"{calibration.WeightedPerMinute:N0} weighted tokens/min of this mix per GPU in full = {calibration.SellablePtu} PTU of {scenario.Model} per GPU (calibrated now)");
        output.WriteLine($"fleet: {options.Fleet.Nodes} GPUs = {capacity} PTU; customers buy {sold} PTU ({sold / capacity:P0}), {soldAfterRaise} PTU ({soldAfterRaise / capacity:P0}) after the raise. " +
                         $"The same customers run twice at once: on a Flywheel fleet and on an identical fleet that batches whole prompts; run {run}");

        var globalPtu = GlobalServing.PtuFor(capacity * scenario.Sell);
        var needed = 2 * sized.Sum(c => Math.Max(c.Ptu, c.RaisedPtu ?? 0)) + (options.GlobalRegions[0] == scenario.Region ? GlobalServing.FirstHalf(globalPtu) : 0);
        if (scenario.OutputScale == 1)
        {
            await PlatformSetup.RecordCalibrationAsync(op, calibration, options.Fleet, ct);
            var poolGpus = await PlatformSetup.EnsureGpusAsync(op, scenario.Model, scenario.Region, calibration, needed, ct);
            output.WriteLine($"platform: calibration recorded; the {scenario.Model} pool in {scenario.Region} is {poolGpus} × {calibration.GpuKind} = {poolGpus * calibration.SellablePtu} PTU (both fleets and whatever else it sells)");
        }
        else
        {
            // Shortened outputs are another mix: its figure would misstate what a GPU serves of real traffic.
            await PlatformSetup.EnsurePoolAsync(op, scenario.Model, scenario.Region, needed, ct);
            output.WriteLine($"platform: calibration not recorded (outputs scaled by {scenario.OutputScale}); the pool in {scenario.Region} has room for {needed} PTU");
        }
        await using var global = await GlobalServing.SetUpAsync(op, clientFor, scenario, options.GlobalRegions, globalPtu, broker, options.MeteringExchange, run, ct);
        var node = await PlatformSetup.RegisterServingNodeAsync(op, producerId, scenario.Region, ct);
        broker = node.Broker(broker);
        var fleets = new[]
        {
            (Scheduling.Flywheel, options.Fleet, "f"),
            (Scheduling.WholePrompt, options.Fleet with { Scheduling = Scheduling.WholePrompt, TokenBudget = DemoOptions.WholePromptBatch }, "w"),
        };
        var provisioned = new List<(Scheduling, FleetOptions, List<Provisioned>)>();
        foreach (var (scheduling, fleet, suffix) in fleets)
        {
            var list = new List<Provisioned>();
            foreach (var customer in sized) list.Add(await PlatformSetup.ProvisionAsync(op, clientFor, customer, scenario, run + suffix, ct));
            provisioned.Add((scheduling, fleet, list));
        }
        var everyone = provisioned.SelectMany(p => p.Item3).ToList();
        output.WriteLine($"dashboard: {options.Platform} — sign in with a key: operator {operatorKey}; finance {await PlatformSetup.FinanceKeyAsync(op, $"finance-{run}", ct)}; " +
                         $"serving node {node.ApiKey}; customers {string.Join(", ", provisioned[0].Item3.Select(c => $"{c.Customer.Name} {c.ApiKey}"))}" +
                         (options.Keep ? "" : " (the deployments are released at the end; --keep leaves them and the host running)"));

        var clock = TimeProvider.System;
        var seen = new ConcurrentQueue<(DateTimeOffset At, AdmissionLimitChanged Limit)>();
        var cache = new AdmissionCache(new AdmissionCacheOptions
        {
            BurstShare = BurstShare(sold / capacity),
            LimitApplied = (limit, update) =>
            {
                if (update != LimitUpdate.Stale) seen.Enqueue((clock.GetUtcNow(), limit));
            },
        });
        var feedFailures = 0;
        await using var feed = await AdmissionFeed.StartAsync(cache, clientFor(node.ApiKey),
            new AdmissionFeedOptions(broker) { Region = scenario.Region, Model = scenario.Model, Failed = _ => Interlocked.Increment(ref feedFailures) }, ct);
        var limits = await KnownLimitsAsync(feed, everyone, ct);
        await using var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(broker, producerId) { Exchange = options.MeteringExchange }, ct);

        var start = clock.GetUtcNow();
        var end = start + scenario.Duration;
        global.Start(options.Fleet, start);
        var sides = new List<Side>();
        foreach (var (scheduling, fleet, customers) in provisioned)
        {
            var tally = new Tally(start, TimeSpan.FromSeconds(1)) { StripSpan = (start + scenario.Duration / 2 - TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2)) };
            var arrivals = new List<Arrivals>();
            foreach (var (customer, n) in customers.Select((c, n) => (c, n)))
            {
                var limit = limits[customer.DeploymentId];
                tally.Follow(customer.DeploymentId, customer.Customer.Name, (double)limit.OutputWeight, (double)limit.CachedDeduction).Limit(start, limit.TokensPerMinute, limit.State);
                arrivals.Add(new Arrivals(customer.DeploymentId, customer.Customer.Workload, limit.TokensPerMinute * customer.Customer.OfferedFactor,
                    limit.TokensPerMinute * customer.Customer.BacklogMinutes, (double)limit.OutputWeight, (double)limit.CachedDeduction, start, seed: n));
            }
            sides.Add(new Side(scheduling, fleet, customers, tally, new Simulation(new Fleet(fleet, cache), tally, arrivals)));
        }
        foreach (var customer in provisioned[0].Item3)
        {
            var limit = limits[customer.DeploymentId];
            output.WriteLine($"  {customer.Customer.Name,-16} {customer.Customer.Ptu} PTU = {limit.TokensPerMinute:N0} weighted tokens/min; " +
                             $"{customer.Customer.Workload.Name} (~{customer.Customer.Workload.PromptTokens:N0} prompt / {customer.Customer.Workload.OutputTokens:N0} generated), " +
                             $"offered {customer.Customer.OfferedFactor:0.#}× after a backlog of {customer.Customer.BacklogMinutes:0.#} min" +
                             (customer.Customer.RaisedPtu is { } raised ? $"; raised to {raised} PTU at {WindowTable.Clock(scenario.EffectiveResizeAt)}" : ""));
        }
        while (seen.TryDequeue(out _))
        {
            // Limits seen before the start are the starting rates, recorded above.
        }
        var ptuPerTokensPerMinute = everyone.ToDictionary(c => c.DeploymentId, c => c.Customer.Ptu / limits[c.DeploymentId].TokensPerMinute);

        output.WriteLine();
        output.WriteLine(WindowTable.Legend);
        output.WriteLine(WindowTable.Header);
        var tick = TimeSpan.FromMilliseconds(10);
        var next = start;
        var nextWindow = 1;
        var resizeAt = start + scenario.EffectiveResizeAt;
        DateTimeOffset? resizedAt = null;
        while (next < end)
        {
            var now = clock.GetUtcNow();
            if (next > now) await Task.Delay(next - now, clock, ct);
            while (seen.TryDequeue(out var change)) Tracked(sides, change.Limit.DeploymentId)?.Limit(change.At, change.Limit.TokensPerMinute, change.Limit.State);

            foreach (var side in sides)
            {
                var step = side.Simulation.Step(next);
                foreach (var sequence in step.Finished) await publisher.RecordAsync(Metered(producerId, sequence), ct);
            }
            await global.StepAsync(next, ct);
            next += tick;

            if (resizedAt is null && next >= resizeAt)
            {
                resizedAt = clock.GetUtcNow();
                foreach (var raised in everyone.Where(c => c.Customer.RaisedPtu is not null)) await PlatformSetup.ResizeAsync(raised, raised.Customer.RaisedPtu!.Value, ct);
            }
            if (next >= start + scenario.Window * nextWindow)
            {
                foreach (var side in sides)
                {
                    await SampleAsync(feed, side.Simulation, side.Customers, start + scenario.Window * nextWindow, ct);
                    PrintWindow(output, side, ptuPerTokensPerMinute, nextWindow - 1, scenario.Window);
                }
                nextWindow++;
            }
        }

        await publisher.FlushAsync(ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        while (seen.TryDequeue(out var late)) Tracked(sides, late.Limit.DeploymentId)?.Limit(late.At, late.Limit.TokensPerMinute, late.Limit.State);
        var (flywheelFigures, wholeFigures) = Comparison.Of(sides[0].Tally, sides[1].Tally, scenario.Window, end);
        List<SideFigures> figures = [Figures(sides[0], flywheelFigures, scenario, end, calibration), Figures(sides[1], wholeFigures, scenario, end, calibration)];
        var firstRise = figures[0].Rises.Count > 0 ? figures[0].Rises[0] : null;
        var pushLatency = resizedAt is { } r && firstRise is not null ? firstRise.ChangedAt - r : (TimeSpan?)null;

        output.WriteLine();
        output.WriteLine("per scheduler and customer, over the windows in which the customer was steady on the Flywheel fleet (backlogged, burst allowance spent, " +
                         "rate changes settled), the same windows on both fleets: served weighted tokens ÷ purchased, the largest departure of one window from that, " +
                         "time per output token (each request's mean time between its tokens) and time to first token (from admission), p50 and p99 over the requests that finished in them");
        foreach (var side in figures)
        {
            output.WriteLine($"{Name(side.Scheduling)}: served {side.ServedOfCapacity:P1} of the fleet's calibrated capacity over the run");
            foreach (var c in side.Customers)
            {
                output.WriteLine(c.Steady.Windows.Count == 0
                    ? $"  {c.Name,-16} no steady window: it takes three request lifetimes after the burst allowance is spent (run longer, or shorten requests with --output-scale 0.25)"
                    : string.Create(CultureInfo.InvariantCulture,
                        $"  {c.Name,-16} served ÷ purchased {c.Steady.Ratio,6:0.000} over {c.Steady.Windows.Count} windows (window to window ±{c.WindowSpread:P1}); " +
                        $"time per output token p50 {c.Latencies.TpotP50.TotalMilliseconds:0.0} ms, p99 {c.Latencies.TpotP99.TotalMilliseconds:0.0} ms ({c.Latencies.TpotP99 / c.Latencies.TpotP50:0.00}× p50); " +
                        $"time to first token p50 {c.Latencies.TtftP50.TotalMilliseconds:0} ms, p99 {c.Latencies.TtftP99.TotalMilliseconds:0} ms ({c.Latencies.Requests:N0} requests)"));
            }
            foreach (var rise in side.Rises)
            {
                output.WriteLine($"  raise: {rise.Name} {rise.FromTokensPerMinute:N0} → {rise.ToTokensPerMinute:N0} weighted tokens/min; " +
                                 (pushLatency is { } latency ? $"the serving node had the new limit {latency.TotalMilliseconds:0} ms after the resize call; " : "") +
                                 (rise.ReachedAfter is { } reached ? $"served tokens/min (5 s average) reached 98% of the new rate {reached.TotalSeconds:0} s after it" : "served tokens/min did not reach 98% of the new rate") +
                                 (rise.FirstWindow is { } first ? $"; first window after: {first.WeightedPerMinute:N0}/min = {first.WeightedPerMinute / rise.FromTokensPerMinute:0.00}× the old rate" : ""));
            }
        }
        output.WriteLine($"admission feed: {feed.PushesApplied} pushes applied, {feed.PushesIgnored} stale ignored, {feed.GapPulls} gap pulls, {feed.Pulls} pulls, {feed.Reconnects} reconnects, {feedFailures} failures");

        var matched = true;
        output.WriteLine($"metering: {publisher.RecordsConfirmed:N0} records confirmed by the broker in {publisher.BatchesPublished:N0} batches; the platform's usage totals:");
        foreach (var side in sides) matched &= await CompareMeteringAsync(output, side, ct);
        var globalFigures = await global.ReportAsync(output, end, ct);
        matched &= globalFigures.MeteringMatched;
        var chartPath = WriteChart(options.OutputDirectory, run, sides, end, scenario, resizedAt);
        output.WriteLine($"chart (open it in a browser): file://{chartPath}");
        if (!options.Keep)
        {
            foreach (var customer in everyone) await PlatformSetup.ReleaseAsync(customer, ct);
            await PlatformSetup.ReleaseAsync(global.Customer, ct);
        }
        return new DemoResult(calibration, sold / capacity, figures, pushLatency, chartPath, globalFigures, matched);
    }

    /// <summary>
    /// The share of each deployment's burst allowance the serving node honours: what its fleet has not sold. A fleet sold to
    /// 90 % can serve bursts only from the other 10 %; honouring whole minutes of burst for everyone at once would put every
    /// customer behind the others for minutes.
    /// </summary>
    public static double BurstShare(decimal soldShare) => Math.Clamp(1 - (double)soldShare, 0.05, 0.9);

    static string Name(Scheduling scheduling) => scheduling == Scheduling.Flywheel ? "Flywheel (chunked prefill)" : "whole-prompt batching";

    static Track? Tracked(IEnumerable<Side> sides, string deploymentId) => sides.Select(s => s.Tally.Find(deploymentId)).OfType<Track>().FirstOrDefault();

    static SideFigures Figures(Side side, IReadOnlyList<CustomerFigures> customers, Scenario scenario, DateTimeOffset end, CalibrationResult calibration)
    {
        var served = side.Tally.Tracks.Sum(t => t.Sum(side.Tally.Start, end).Weighted);
        var capacity = calibration.WeightedPerMinute * side.Fleet.Nodes * (end - side.Tally.Start).TotalMinutes;
        var rises = side.Tally.Tracks.SelectMany(t => WindowReport.Rises(side.Tally, t, scenario.Window, end)).ToList();
        return new SideFigures(side.Scheduling, customers, served / capacity, rises);
    }

    /// <summary>Waits until the cache holds a limit for every deployment (the start pull usually has them; pushes may bring them later).</summary>
    public static async Task<Dictionary<string, AdmissionLimitChanged>> KnownLimitsAsync(AdmissionFeed feed, IReadOnlyList<Provisioned> customers, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        Exception? failure = null;
        while (true)
        {
            var known = customers.Select(c => feed.Cache.Limit(c.DeploymentId)).ToList();
            if (known.All(l => l is not null)) return known.ToDictionary(l => l!.DeploymentId, l => l!);
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"The platform did not give the serving node the admission limits of the new deployments (last pull: {failure?.Message ?? "answered without them"}).", failure);
            try
            {
                await feed.PullAsync(customers.Select(c => c.DeploymentId), ct);
            }
            catch (HttpRequestException e)
            {
                failure = e; // retried until the deadline
            }
            await Task.Delay(200, ct);
        }
    }

    /// <summary>The metering record of a finished request; its id (producer and request) is unique across the fleet.</summary>
    public static MeteringRecord Metered(string producerId, Sequence sequence) => new(
        $"{producerId}:{sequence.Request.RequestId}", sequence.Request.DeploymentId, sequence.Request.RequestId,
        sequence.Request.PromptTokens, sequence.Request.CachedTokens, sequence.Generated, sequence.Admission.IsSpilled,
        sequence.Admission.EstimatedTokens, sequence.AdmittedAt, sequence.FinishedAt ?? sequence.AdmittedAt, sequence.Request.AdapterId);

    /// <summary>Queue lengths, and the platform's metered utilization pulled now, as of the end of a window.</summary>
    static async Task SampleAsync(AdmissionFeed feed, Simulation simulation, IReadOnlyList<Provisioned> customers, DateTimeOffset windowEnd, CancellationToken ct)
    {
        IReadOnlyList<AdmissionLimitChanged> pulled = [];
        try
        {
            pulled = await feed.PullAsync(customers.Select(c => c.DeploymentId), ct);
        }
        catch (HttpRequestException)
        {
            // The utilization column shows '-' for this window.
        }
        foreach (var customer in customers)
        {
            var utilization = pulled.FirstOrDefault(l => l.DeploymentId == customer.DeploymentId)?.Utilization;
            simulation.Tally[customer.DeploymentId].Sample(windowEnd, simulation.Fleet.Queued(customer.DeploymentId), utilization);
        }
    }

    static void PrintWindow(TextWriter output, Side side, Dictionary<string, decimal> ptuPerRate, int index, TimeSpan window)
    {
        var tally = side.Tally;
        foreach (var customer in side.Customers)
        {
            var row = WindowReport.Row(tally, tally[customer.DeploymentId], index, window);
            output.WriteLine(WindowTable.Line(row, decimal.Round(row.TokensPerMinute * ptuPerRate[customer.DeploymentId], 1), side.Scheduling));
        }
    }

    /// <summary>What the platform metered for each deployment against what the batcher served and published.</summary>
    static async Task<bool> CompareMeteringAsync(TextWriter output, Side side, CancellationToken ct)
    {
        var allMatched = true;
        foreach (var customer in side.Customers)
        {
            var finished = side.Tally[customer.DeploymentId].Slots.Sum(s => s.Finished);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            System.Text.Json.JsonElement totals;
            do
            {
                totals = await PlatformSetup.TotalsAsync(customer, ct);
                if (totals.GetProperty("records").GetInt64() >= finished) break;
                await Task.Delay(200, ct);
            }
            while (DateTime.UtcNow < deadline);
            var records = totals.GetProperty("records").GetInt64();
            allMatched &= records == finished;
            output.WriteLine($"  {WindowTable.FleetLabel(side.Scheduling)} {customer.Customer.Name,-16} {records:N0} records ({(records == finished ? "all" : $"of {finished:N0}")} served), " +
                             $"{totals.GetProperty("promptTokens").GetInt64():N0} prompt, {totals.GetProperty("cachedTokens").GetInt64():N0} cached, {totals.GetProperty("outputTokens").GetInt64():N0} output tokens");
        }
        return allMatched;
    }

    static string WriteChart(string directory, string run, IReadOnlyList<Side> sides, DateTimeOffset end, Scenario scenario, DateTimeOffset? resizedAt)
    {
        Directory.CreateDirectory(directory);
        var start = sides[0].Tally.Start;
        var path = Path.GetFullPath(Path.Combine(directory, $"flywheel-{start:yyyyMMdd-HHmmss}-{run}.html"));
        var step = TimeSpan.FromSeconds(Math.Clamp(scenario.Window.TotalSeconds / 6, 1, 10));
        File.WriteAllText(path, Chart.Page($"Flywheel demo {start:yyyy-MM-dd HH:mm} UTC", [.. sides.Select(s => (Name(s.Scheduling), s.Tally))], end, step, resizedAt));
        return path;
    }
}
