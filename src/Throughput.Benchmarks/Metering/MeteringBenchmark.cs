using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Metering;

/// <summary>
/// Metering records per second sustained into durable state, publish-to-durable latency and the host's memory, with
/// the serving SDK publishing to a platform host of the benchmark's own (own exchange and partition queues, so test
/// hosts on the same broker neither take its messages nor give it theirs).
/// </summary>
public sealed class MeteringBenchmark : IBenchmark
{
    const double TargetRecordsPerSecond = 100_000;
    static readonly TimeSpan TargetP99 = TimeSpan.FromSeconds(1);
    const long TargetPeakRss = 512L * 1024 * 1024;
    static readonly TimeSpan ProgressEvery = TimeSpan.FromSeconds(5);
    static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(15);
    const int MeteringInFlight = 50_000;
    const double TargetShareOfRaw = 0.6;

    public string Name => "metering";

    public string Summary => "SDK → RabbitMQ → metering consumers → PostgreSQL: durable records/s, publish-to-durable latency, host peak RSS, exactness";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("duration", "seconds measured after the warm-up (60)"),
        ("warmup", "seconds of load before measuring; the host JIT-tiers for about 45 s (60)"),
        ("deployments", "deployments metered into (16)"),
        .. LoadShape.Options(0, MeteringInFlight),
        ("partitions", "host Metering:Partitions (4)"),
        ("batch-message-limit", "host Metering:BatchMessageLimit (host default)"),
        ("host-env", "NAME=VALUE added to the host's environment; repeatable"),
        ("poll-ms", "how often PostgreSQL is polled for new usage events (100)"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
        ("ceiling-duration", "seconds the raw path (RabbitMQ.Client + one upsert per batch) is measured after 5 s of warm-up; 0 = none (20)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var duration = options.Seconds("duration", TimeSpan.FromSeconds(60));
        var warmup = options.Seconds("warmup", TimeSpan.FromSeconds(60));
        var deployments = options.Count("deployments", 16);
        var shape = LoadShape.From(options, defaultRate: 0, defaultInFlight: MeteringInFlight);
        var poll = options.Milliseconds("poll-ms", TimeSpan.FromMilliseconds(100));
        var runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var topology = new BenchTopology(runId, options.Count("partitions", 4));
        var hostEnvironment = HostEnvironment(topology, options);
        var hostDll = Services.PlatformHostDll(options);
        var ceilingDuration = options.Seconds("ceiling-duration", TimeSpan.FromSeconds(20));
        options.EnsureAllRead();

        Log($"run {runId}: starting the platform host ({string.Join(' ', hostEnvironment.Select(e => $"{e.Key}={e.Value}"))})");
        try
        {
            await using var host = await PlatformHost.StartAsync(hostDll, hostEnvironment, cancellationToken);
            Log($"host pid {host.ProcessId} ready on {host.BaseAddress} (log: {host.LogPath})");
            using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
            var fleet = await MeteringFleet.SetUpAsync(operatorApi, runId, deployments, shape.Publishers, cancellationToken);
            Log($"tenant {fleet.TenantId}: {fleet.Deployments.Count} deployments of {MeteringFleet.Model} at {MeteringFleet.PtuPerDeployment(fleet.Deployments.Count)} PTU, producers {string.Join(", ", fleet.Producers)}");
            var run = await MeasureAsync(host, null, fleet, topology, shape, warmup, duration, poll, Services.PostgresSchema(), cancellationToken);
            await host.DisposeAsync(); // the raw path gets the machine to itself, as the platform had it
            var report = Report(run, fleet, shape, warmup, poll, hostEnvironment);
            if (ceilingDuration <= TimeSpan.Zero) return report;
            var ceilingShape = MeteringCeilingShape.Platform(deployments, shape.Publishers, run.RecordsPerMessage, shape.InFlight);
            Log($"raw ceiling: {ceilingShape.Producers} RabbitMQ.Client publishers, {ceilingShape.RecordsPerMessage} records per message, {ceilingShape.Partitions} bare consumers, measuring {ceilingDuration.TotalSeconds:0} s");
            var raw = await MeteringCeiling.MeasureAsync(ceilingShape, TimeSpan.FromSeconds(5), ceilingDuration, cancellationToken);
            return WithCeiling(report, run, raw, ceilingShape);
        }
        finally
        {
            await topology.RemoveAsync();
        }
    }

    /// <summary>Drives the load into a started host's fleet: a warm-up, then the measured window, then a drain; the figures of the window.</summary>
    /// <param name="daemon">The host running the projection daemon, when it is not <paramref name="host"/>: its CPU is shown apart.</param>
    public static async Task<MeteringRun> MeasureAsync(PlatformHost host, PlatformHost? daemon, MeteringFleet fleet, BenchTopology topology, LoadShape shape,
        TimeSpan warmup, TimeSpan duration, TimeSpan poll, string schema, CancellationToken ct)
    {
        await using var observer = new DurableObserver(Services.PostgresConnectionString(), fleet.Deployments, poll, schema, topology.UsageStreams);
        await observer.StartAsync(ct);
        await using var queues = await RabbitQueues.ConnectAsync(Services.PlatformBroker(), ct);
        await using var load = await LoadDriver.ConnectAsync(shape, fleet, topology.Exchange, () => observer.Records, ct);

        load.Start();
        Log($"warming up for {warmup.TotalSeconds:0} s");
        await WatchAsync(load, observer, queues, topology, warmup, ct);
        var window = Snapshot.Take(load, host, daemon);
        Log($"measuring for {duration.TotalSeconds:0} s");
        var maxQueued = await WatchAsync(load, observer, queues, topology, duration, ct);
        var end = Snapshot.Take(load, host, daemon);

        await load.StopAsync(DrainTimeout);
        var drained = await LoadProgress.DrainAsync(load, observer, DrainTimeout, ct);
        var batches = await observer.StopAsync(ct);
        var counted = await observer.CountedRecordsAsync(batches.Sum(b => b.Records), ct);
        var quarantined = await observer.QuarantinedAsync(fleet.Producers, ct);

        var measured = batches.Where(b => b.ObservedAt >= window.At && b.ObservedAt < end.At).ToList();
        var exact = drained && load.HandedOver == load.Confirmed && load.Confirmed == counted && batches.Sum(b => b.Records) == counted && quarantined == 0;
        return new MeteringRun(window.At, end.At, measured, batches, exact, counted, load.Confirmed, load.HandedOver, quarantined, drained,
            (end.Confirmed - window.Confirmed) / (end.At - window.At).TotalSeconds, maxQueued, load.Republishes, load.PublishFailures,
            CpuUse.Between(window.Cpu, end.Cpu), host.PeakResidentBytes(), load.BatchesConfirmed,
            (load.ConfirmLatency(window.At, end.At, 50), load.ConfirmLatency(window.At, end.At, 99)));
    }

    static BenchmarkReport Report(MeteringRun run, MeteringFleet fleet, LoadShape shape, TimeSpan warmup, TimeSpan poll, IReadOnlyDictionary<string, string> hostEnvironment)
    {
        var p99 = run.PublishToDurable(99);
        return new BenchmarkReport("metering",
        [
            new("durable records/s (usage events in PostgreSQL)", Number(run.DurablePerSecond), "≥ 100,000", run.DurablePerSecond >= TargetRecordsPerSecond),
            new("publish→durable p50, upper bound", Ms(run.PublishToDurable(50))),
            new("publish→durable p99, upper bound", Ms(p99), "≤ 1,000 ms", p99 <= TargetP99.TotalMilliseconds),
            new("publish→durable p50 / p99, each record at its event's oldest", $"{Ms(run.PublishToDurableByEvent(50))} / {Ms(run.PublishToDurableByEvent(99))}"),
            new("publish→consumer append p50 / p99 (before commit)", $"{Ms(run.PublishToAppend(50))} / {Ms(run.PublishToAppend(99))}"),
            new("SDK publish rate (broker-confirmed records/s)", Number(run.ConfirmedPerSecond)),
            new("SDK publish→broker confirm p50 / p99; records per message", $"{Ms(run.Confirm.P50)} / {Ms(run.Confirm.P99)}; {Number(run.RecordsPerMessage)}"),
            new("host peak RSS (VmHWM)", $"{run.PeakRss / (1024 * 1024)} MB", "≤ 512 MB", run.PeakRss <= TargetPeakRss),
            new("exactly once: confirmed = counted", run.Exactness(DrainTimeout), "equal", run.Exact),
            new("usage events/s; records per event", $"{Number(run.Measured.Count / run.Seconds)}; {Number(run.Measured.Count == 0 ? 0 : run.Measured.Average(b => (double)b.Records))}"),
            new("ready messages in partition queues, max", Number(run.MaxQueued)),
            new("republishes; publish failures", $"{run.Republishes}; {run.PublishFailures}"),
        ],
        [
            $"{run.Seconds:0} s measured after {warmup.TotalSeconds:0} s warm-up on {Environment.ProcessorCount} cores",
            $"{fleet.Deployments.Count} deployments, {shape.Publishers} publishers, SDK batches of ≤ {shape.MaxBatchRecords} records / {shape.MaxLinger.TotalMilliseconds:0} ms linger, ≤ {Number(shape.InFlight)} records in flight{(shape.Rate > 0 ? $", offered {Number(shape.Rate)}/s" : ", closed loop")}",
            "host " + string.Join(" ", hostEnvironment.Where(e => !e.Key.StartsWith("Access", StringComparison.Ordinal)).Select(e => $"{e.Key}={e.Value}")),
            $"durable = first seen by a poll of mt_events every {poll.TotalMilliseconds:0} ms; latency = that moment − the firstStartedAt of each deployment's part of the event (the hand-over to the SDK of that deployment's oldest record in it): an upper bound for each of those records, by up to the poll interval; percentiles weighted by records; {run.All.Count(b => b.Late)} events found only after the run",
            $"CPU cores used while measuring: {CpuUse.Describe(run.Cpu)} (other = anything else on the machine, e.g. builds)",
        ]);
    }

    static BenchmarkReport WithCeiling(BenchmarkReport report, MeteringRun run, MeteringCeilingRun raw, MeteringCeilingShape shape) => report with
    {
        Figures =
        [
            new Ceiling(run.DurablePerSecond, raw.RecordsPerSecond).AtLeast("durable records/s: platform / raw ceiling", TargetShareOfRaw, Number),
            .. report.Figures,
            new("raw ceiling: messages and rows per consumer batch", $"{raw.MessagesPerBatch:0.0} messages, {raw.RowsPerBatch:0.0} rows"),
        ],
        Conditions =
        [
            .. report.Conditions,
            $"raw ceiling, after the host stopped: the same JSON bytes (the SDK's serializer, {shape.RecordsPerMessage} records per message as the platform run averaged) published with RabbitMQ.Client and publisher confirms by {shape.Producers} connections, one message in flight per deployment, ≤ {Number(shape.InFlight)} records unacknowledged; a consistent-hash exchange and {shape.Partitions} partition queues of its own; bare consumers with prefetch {shape.Prefetch}, batches of ≤ {shape.BatchMessageLimit} messages or {shape.BatchTimeLimit.TotalMilliseconds:0} ms, each written as the platform's rows for it (a claim per message, a meter per deployment, the event, the stream's version) in one upsert and one transaction in a scratch schema, acked after commit; no JSON read, no Marten, no MassTransit",
            $"raw ceiling CPU cores: {CpuUse.Describe(raw.Cpu)}",
        ],
    };

    /// <summary>Prints the rates every few seconds while the load runs; returns the most messages seen waiting in the partition queues.</summary>
    static async Task<long> WatchAsync(LoadDriver load, DurableObserver observer, RabbitQueues queues, BenchTopology topology, TimeSpan span, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var progress = new LoadProgress(load, observer);
        long maxQueued = 0;
        while (Stopwatch.GetElapsedTime(started) < span)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
            var queued = await queues.ReadyMessagesAsync(topology.PartitionQueues, ct);
            maxQueued = Math.Max(maxQueued, queued);
            if (progress.SinceLast >= ProgressEvery) Log($"{progress.Next()}, queued messages {queued}");
        }
        return maxQueued;
    }

    static Dictionary<string, string> HostEnvironment(BenchTopology topology, BenchOptions options)
    {
        var environment = topology.HostSettings();
        if (options.Text("batch-message-limit", "") is { Length: > 0 } limit) environment["Metering__BatchMessageLimit"] = limit;
        return options.HostEnvironment(environment);
    }

    internal static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    internal static string Ms(double milliseconds) => $"{milliseconds.ToString("#,0", CultureInfo.InvariantCulture)} ms";

    static void Log(string line) => Console.WriteLine($"[metering {DateTime.Now:HH:mm:ss}] {line}");

    sealed record Snapshot(DateTimeOffset At, long Confirmed, CpuUse Cpu)
    {
        public static Snapshot Take(LoadDriver load, PlatformHost host, PlatformHost? daemon) =>
            new(DateTimeOffset.UtcNow, load.Confirmed, CpuUse.Now(host.ProcessId, daemonPid: daemon?.ProcessId));
    }
}

/// <summary>What one metering measurement saw: the usage events durable inside its window (and all of them), and the exactness check.</summary>
public sealed record MeteringRun(DateTimeOffset From, DateTimeOffset To, IReadOnlyList<DurableBatch> Measured, IReadOnlyList<DurableBatch> All, bool Exact,
    long Counted, long Confirmed, long HandedOver, long Quarantined, bool Drained, double ConfirmedPerSecond, long MaxQueued, long Republishes,
    long PublishFailures, IReadOnlyList<(string Role, double Cores)> Cpu, long PeakRss, long BatchesConfirmed, (double P50, double P99) Confirm)
{
    /// <summary>Records per published batch over the run: what the SDK's linger made of the load, for the raw ceiling to publish alike.</summary>
    public int RecordsPerMessage => BatchesConfirmed == 0 ? 1 : (int)Math.Max(1, Math.Round(Confirmed / (double)BatchesConfirmed));

    public double Seconds => (To - From).TotalSeconds;

    public double DurablePerSecond => Measured.Sum(b => b.Records) / Seconds;

    /// <summary>Each deployment's records in an event counted from the earliest of them: an upper bound for each record, by up to the poll interval and the spread of that deployment's records in the event.</summary>
    public double PublishToDurable(double percentile) => PerEntry(b => b.ObservedAt, percentile);

    /// <summary>Every record of an event counted from the event's earliest: the looser bound, as this benchmark reported it until 2026-12-06.</summary>
    public double PublishToDurableByEvent(double percentile) => Percentiles.Weighted([.. Measured.Select(b => ((b.ObservedAt - b.FirstStartedAt).TotalMilliseconds, b.Records))], percentile);

    public double PublishToAppend(double percentile) => PerEntry(b => b.AppendedAt, percentile);

    /// <summary>Each deployment's records in an event, from that deployment's oldest there to the event's moment <paramref name="end"/>.</summary>
    double PerEntry(Func<DurableBatch, DateTimeOffset> end, double percentile) =>
        Percentiles.Weighted([.. Measured.SelectMany(b => b.Entries.Select(e => ((end(b) - e.FirstStartedAt).TotalMilliseconds, e.Records)))], percentile);

    public string Exactness(TimeSpan drainTimeout) => Exact
        ? $"yes: {MeteringBenchmark.Number(Counted)} = {MeteringBenchmark.Number(Counted)}"
        : $"NO: {MeteringBenchmark.Number(Confirmed - Counted)} of {MeteringBenchmark.Number(Confirmed)} confirmed records not counted ({(Confirmed - Counted) * 100.0 / Math.Max(1, Confirmed):0.00} %); handed over {MeteringBenchmark.Number(HandedOver)}, in events {MeteringBenchmark.Number(All.Sum(b => b.Records))}, quarantined {Quarantined}{(Drained ? "" : $", still short {drainTimeout.TotalSeconds:0} s after the load stopped")}";
}
