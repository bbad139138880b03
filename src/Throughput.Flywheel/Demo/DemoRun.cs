using System.Collections.Concurrent;
using System.Globalization;
using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;
using Throughput.Flywheel.Report;
using Throughput.Serving;

namespace Throughput.Flywheel.Demo;

/// <summary>What a demo run measured.</summary>
public sealed record DemoResult(
    Tally Tally, DateTimeOffset End, IReadOnlyList<Provisioned> Customers, IReadOnlyList<SteadyState> Steady, IReadOnlyList<RateRise> Rises,
    TimeSpan? PushLatency, string ChartPath, bool MeteringMatched);

/// <summary>
/// The demo: sets up customers on the platform, runs the Flywheel batcher in real time against their deployments (admitted
/// through the serving SDK's <see cref="AdmissionCache"/>, metered through its <see cref="MeteringPublisher"/>), raises one
/// customer's PTUs midway through the customer API, prints a table per window and a summary, and writes a chart.
/// </summary>
public static class DemoRun
{
    public static async Task<DemoResult> RunAsync(
        DemoOptions options, string operatorKey, Func<string, HttpClient> clientFor, Uri broker, TextWriter output, CancellationToken ct)
    {
        var scenario = options.Scenario;
        var run = Guid.NewGuid().ToString("N")[..8];
        var op = clientFor(operatorKey);
        var producerId = $"flywheel-{run}";

        output.WriteLine($"flywheel: {options.Fleet.Nodes} GPU nodes × {options.Fleet.TokenBudget:N0} tokens per {options.Fleet.IterationTime.TotalMilliseconds:0} ms iteration " +
                         $"= {options.Fleet.TokensPerMinute / 1e6:0.#}M tokens/min; {scenario.Model} in {scenario.Region}; run {run}");
        await PlatformSetup.EnsurePoolAsync(op, scenario.Model, scenario.Region, scenario.PtuNeeded, ct);
        var node = await PlatformSetup.RegisterServingNodeAsync(op, producerId, scenario.Region, ct);
        broker = node.Broker(broker);
        var customers = new List<Provisioned>();
        foreach (var customer in scenario.Customers) customers.Add(await PlatformSetup.ProvisionAsync(op, clientFor, customer, scenario, run, ct));

        var clock = TimeProvider.System;
        var seen = new ConcurrentQueue<(DateTimeOffset At, AdmissionLimitChanged Limit)>();
        var cache = new AdmissionCache(new AdmissionCacheOptions
        {
            LimitApplied = (limit, update) =>
            {
                if (update != LimitUpdate.Stale) seen.Enqueue((clock.GetUtcNow(), limit));
            },
        });
        var feedFailures = 0;
        await using var feed = await AdmissionFeed.StartAsync(cache, clientFor(node.ApiKey),
            new AdmissionFeedOptions(broker) { Region = scenario.Region, Model = scenario.Model, Failed = _ => Interlocked.Increment(ref feedFailures) }, ct);
        var limits = await KnownLimitsAsync(feed, customers, ct);
        await using var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(broker, producerId) { Exchange = options.MeteringExchange }, ct);

        var start = clock.GetUtcNow();
        var end = start + scenario.Duration;
        var tally = new Tally(start, TimeSpan.FromSeconds(1));
        var arrivals = new List<Arrivals>();
        foreach (var (customer, n) in customers.Select((c, n) => (c, n)))
        {
            var limit = limits[customer.DeploymentId];
            tally.Follow(customer.DeploymentId, customer.Customer.Name, (double)limit.OutputWeight, (double)limit.CachedDeduction)
                .Limit(start, limit.TokensPerMinute, limit.State);
            arrivals.Add(new Arrivals(customer.DeploymentId, customer.Customer.Workload, limit.TokensPerMinute * customer.Customer.OfferedFactor,
                limit.TokensPerMinute * customer.Customer.BacklogMinutes, (double)limit.OutputWeight, (double)limit.CachedDeduction, start, seed: n));
            output.WriteLine($"  {customer.Customer.Name,-16} tenant {customer.TenantId}, deployment {customer.DeploymentId}: {customer.Customer.Ptu} PTU = {limit.TokensPerMinute:N0} weighted tokens/min; " +
                             $"{customer.Customer.Workload.Name} (~{customer.Customer.Workload.PromptTokens:N0} prompt / {customer.Customer.Workload.OutputTokens:N0} generated), " +
                             $"offered {customer.Customer.OfferedFactor:0.#}× after a backlog of {customer.Customer.BacklogMinutes:0.#} min" +
                             (customer.Customer.RaisedPtu is { } raised ? $"; raised to {raised} PTU at {WindowTable.Clock(scenario.EffectiveResizeAt)}" : ""));
        }
        while (seen.TryDequeue(out _))
        {
            // Limits seen before the start are the starting rates, recorded above.
        }
        var simulation = new Simulation(new Fleet(options.Fleet, cache), tally, arrivals);
        var ptuPerTokensPerMinute = customers.ToDictionary(c => c.DeploymentId, c => c.Customer.Ptu / limits[c.DeploymentId].TokensPerMinute);

        output.WriteLine();
        output.WriteLine(WindowTable.Header);
        var next = start;
        var nextWindow = 1;
        var resizeAt = start + scenario.EffectiveResizeAt;
        DateTimeOffset? resizedAt = null;
        while (next < end)
        {
            var now = clock.GetUtcNow();
            if (next > now) await Task.Delay(next - now, clock, ct);
            while (seen.TryDequeue(out var change)) tally[change.Limit.DeploymentId].Limit(change.At, change.Limit.TokensPerMinute, change.Limit.State);

            var step = simulation.Step(next);
            foreach (var sequence in step.Finished) await publisher.RecordAsync(Metered(producerId, sequence), ct);
            next += options.Fleet.IterationTime;

            if (resizedAt is null && next >= resizeAt && customers.FirstOrDefault(c => c.Customer.RaisedPtu is not null) is { } raised)
            {
                resizedAt = clock.GetUtcNow();
                await PlatformSetup.ResizeAsync(raised, raised.Customer.RaisedPtu!.Value, ct);
            }
            if (next >= start + scenario.Window * nextWindow)
            {
                await SampleAsync(feed, simulation, customers, start + scenario.Window * nextWindow, ct);
                PrintWindow(output, tally, customers, ptuPerTokensPerMinute, nextWindow - 1, scenario.Window);
                nextWindow++;
            }
        }

        await publisher.FlushAsync(ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        while (seen.TryDequeue(out var late)) tally[late.Limit.DeploymentId].Limit(late.At, late.Limit.TokensPerMinute, late.Limit.State);
        var steady = customers.Select(c => WindowReport.Steady(tally, tally[c.DeploymentId], scenario.Window, end)).ToList();
        var rises = customers.SelectMany(c => WindowReport.Rises(tally, tally[c.DeploymentId], scenario.Window, end)).ToList();
        var pushLatency = resizedAt is { } r && rises.FirstOrDefault() is { } rise ? rise.ChangedAt - r : (TimeSpan?)null;

        output.WriteLine();
        output.WriteLine($"GPU: {tally.GpuUtilization(start, end):P1} of the fleet's token budget used; every customer got one token per iteration ({options.Fleet.IterationTime.TotalMilliseconds:0} ms per generated token) whatever its profile.");
        output.WriteLine("steady state (backlogged, burst allowance spent, rate changes settled): served weighted tokens ÷ purchased");
        foreach (var s in steady)
        {
            output.WriteLine(s.Windows.Count == 0
                ? $"  {s.Name,-16} no steady window yet: it takes three request lifetimes after the burst (run longer, or shorten requests with --iteration 10ms)"
                : $"  {s.Name,-16} {s.Ratio,7:0.0000} over {s.Windows.Count} windows ({string.Join(", ", s.Windows.Select(w => WindowTable.Span(w.From, w.To)))}); " +
                  $"worst window {s.Windows.Select(w => w.Ratio).MaxBy(x => Math.Abs(x - 1)):0.000}");
        }
        foreach (var riseOf in rises)
        {
            output.WriteLine($"raise: {riseOf.Name} {riseOf.FromTokensPerMinute:N0} → {riseOf.ToTokensPerMinute:N0} weighted tokens/min; " +
                             (pushLatency is { } latency ? $"the serving node had the new limit {latency.TotalMilliseconds:0} ms after the resize call; " : "") +
                             (riseOf.ReachedAfter is { } reached ? $"served tokens/min (5 s average) reached 98% of the new rate {reached.TotalSeconds:0} s after it" : "served tokens/min did not reach 98% of the new rate") +
                             (riseOf.FirstWindow is { } first ? $"; first window after: {first.WeightedPerMinute:N0}/min = {first.WeightedPerMinute / riseOf.FromTokensPerMinute:0.00}× the old rate" : ""));
        }
        output.WriteLine($"admission feed: {feed.PushesApplied} pushes applied, {feed.PushesIgnored} stale ignored, {feed.GapPulls} gap pulls, {feed.Pulls} pulls, {feed.Reconnects} reconnects, {feedFailures} failures");

        var matched = await CompareMeteringAsync(output, tally, customers, publisher, ct);
        var chartPath = WriteChart(options.OutputDirectory, run, tally, end, scenario);
        output.WriteLine($"chart: {chartPath}");
        foreach (var customer in customers) await PlatformSetup.ReleaseAsync(customer, ct);
        return new DemoResult(tally, end, customers, steady, rises, pushLatency, chartPath, matched);
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
        sequence.Admission.EstimatedTokens, sequence.AdmittedAt, sequence.FinishedAt ?? sequence.AdmittedAt);

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

    static void PrintWindow(TextWriter output, Tally tally, IReadOnlyList<Provisioned> customers, Dictionary<string, decimal> ptuPerRate, int index, TimeSpan window)
    {
        foreach (var customer in customers)
        {
            var row = WindowReport.Row(tally, tally[customer.DeploymentId], index, window);
            output.WriteLine(WindowTable.Line(row, decimal.Round(row.TokensPerMinute * ptuPerRate[customer.DeploymentId], 1)));
        }
        var from = tally.Start + window * index;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{WindowTable.Span(from - tally.Start, from + window - tally.Start),-11} GPU budget used {tally.GpuUtilization(from, from + window):P1}"));
    }

    /// <summary>What the platform metered for each deployment against what the batcher served and published.</summary>
    static async Task<bool> CompareMeteringAsync(TextWriter output, Tally tally, IReadOnlyList<Provisioned> customers, MeteringPublisher publisher, CancellationToken ct)
    {
        output.WriteLine($"metering: {publisher.RecordsConfirmed:N0} records confirmed by the broker in {publisher.BatchesPublished:N0} batches; the platform's usage totals:");
        var allMatched = true;
        foreach (var customer in customers)
        {
            var finished = tally[customer.DeploymentId].Slots.Sum(s => s.Finished);
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
            output.WriteLine($"  {customer.Customer.Name,-16} {records:N0} records ({(records == finished ? "all" : $"of {finished:N0}")} served), " +
                             $"{totals.GetProperty("promptTokens").GetInt64():N0} prompt, {totals.GetProperty("cachedTokens").GetInt64():N0} cached, {totals.GetProperty("outputTokens").GetInt64():N0} output tokens");
        }
        return allMatched;
    }

    static string WriteChart(string directory, string run, Tally tally, DateTimeOffset end, Scenario scenario)
    {
        Directory.CreateDirectory(directory);
        var path = Path.GetFullPath(Path.Combine(directory, $"flywheel-{tally.Start:yyyyMMdd-HHmmss}-{run}.html"));
        var step = TimeSpan.FromSeconds(Math.Clamp(scenario.Window.TotalSeconds / 6, 1, 10));
        File.WriteAllText(path, Chart.Html($"Flywheel demo {tally.Start:yyyy-MM-dd HH:mm} UTC: served vs purchased weighted tokens per minute", tally, end, step));
        return path;
    }
}
