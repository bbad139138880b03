using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Security.Cryptography;
using Npgsql;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// How long a throttle takes to reach a serving node: the node meters one batch that takes a small deployment past 100% of
/// its bucket, the platform's metering consumer commits the throttle and pushes it, and the node's AdmissionFeed applies it
/// to its AdmissionCache. One deployment at a time, so each sample is one throttle crossing an idle path.
/// </summary>
public sealed class AdmissionFeedbackBenchmark : IBenchmark
{
    const double TargetP99Ms = 50;
    const string Model = "gpt-4o";
    const long PromptTokens = 400; // above the whole bucket of a 0.1-PTU gpt-4o deployment (250 tokens/min, 60 s deep)
    static readonly TimeSpan ThrottleTimeout = TimeSpan.FromSeconds(10);

    public string Name => "admission-feedback";

    public string Summary => "metered batch crossing 100% → throttle applied in the serving node's AdmissionCache (via the admission push): p50/p99/max";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("deployments", "deployments measured, one throttle each; 100 makes p99 the second-slowest, not the slowest (100)"),
        ("warmup-deployments", "deployments throttled first and not measured, so the host runs its optimized code rather than still compiling it (100)"),
        ("ptu", "PTU of each gpt-4o deployment; one batch of 400 prompt tokens must exceed its bucket (0.1)"),
        ("gap-ms", "pause between two deployments' batches (100)"),
        ("partitions", "host Metering:Partitions (4)"),
        ("host-env", "NAME=VALUE added to the host's environment; repeatable (e.g. Metering__BatchTimeLimit=00:00:00.005)"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var measuredCount = options.Count("deployments", 100);
        var warmupCount = options.Count("warmup-deployments", 100);
        var ptu = decimal.Parse(options.Text("ptu", "0.1"), CultureInfo.InvariantCulture);
        var gap = options.Milliseconds("gap-ms", TimeSpan.FromMilliseconds(100));
        var runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var topology = new BenchTopology(runId, options.Count("partitions", 4));
        var hostEnvironment = options.HostEnvironment(topology.HostSettings());
        var hostDll = Services.PlatformHostDll(options);
        options.EnsureAllRead();

        Log($"run {runId}: starting the platform host ({string.Join(' ', hostEnvironment.Select(e => $"{e.Key}={e.Value}"))})");
        try
        {
            await using var host = await PlatformHost.StartAsync(hostDll, hostEnvironment, cancellationToken);
            Log($"host pid {host.ProcessId} ready on {host.BaseAddress} (log: {host.LogPath})");
            using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
            var fleet = await AdmissionFleet.SetUpAsync(operatorApi, runId, Model, warmupCount + measuredCount, ptu, registerProducer: true, cancellationToken);
            Log($"tenant {fleet.TenantId}: {fleet.Deployments.Count} deployments of {Model} at {ptu} PTU in region {fleet.Region}");
            var node = await ServingNode.StartAsync(host, fleet, topology, cancellationToken);
            await using (node)
            {
                var warmup = await ThrottleEachAsync(node, fleet.Deployments.Take(warmupCount), gap, cancellationToken);
                Log($"warm-up: {warmup.Count} throttles, last {warmup.LastOrDefault()?.HandedToThrottledMs:0} ms");
                var before = CpuUse.Now(host.ProcessId);
                var samples = await ThrottleEachAsync(node, fleet.Deployments.Skip(warmupCount), gap, cancellationToken);
                var cpu = CpuUse.Between(before, CpuUse.Now(host.ProcessId));
                await AddAppendTimesAsync(samples, cancellationToken);
                var report = Report(samples, measuredCount, node.Feed, ptu, gap, hostEnvironment, cpu);
                var pushBytes = node.LastThrottle is { } pushed ? JsonSerializer.SerializeToUtf8Bytes(pushed, WebJson).Length : 300;
                Log($"raw ceiling: {measuredCount} RabbitMQ.Client publishes of {pushBytes} bytes to a topic exchange, one at a time");
                var raw = await FeedbackCeiling.MeasureAsync(measuredCount, warmupCount, gap, pushBytes, cancellationToken);
                return WithCeiling(report, samples, raw, pushBytes);
            }
        }
        finally
        {
            await topology.RemoveAsync();
        }
    }

    /// <summary>Meters one over-bucket batch per deployment, each after the previous one's throttle arrived (or timed out).</summary>
    static async Task<List<FeedbackSample>> ThrottleEachAsync(ServingNode node, IEnumerable<string> deployments, TimeSpan gap, CancellationToken ct)
    {
        var samples = new List<FeedbackSample>();
        foreach (var deployment in deployments)
        {
            var sample = await node.ThrottleAsync(deployment, ct);
            if (sample is not null) samples.Add(sample);
            else Log($"{deployment}: no throttle within {ThrottleTimeout.TotalSeconds:0} s");
            await Task.Delay(gap, ct);
        }
        return samples;
    }

    /// <summary>The throttle events' Marten timestamps (taken in the consumer when it appended), to split the path at the commit.</summary>
    static async Task AddAppendTimesAsync(List<FeedbackSample> samples, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand("select stream_id, min(\"timestamp\") from throughput.mt_events where type = 'deployment_throttled' and stream_id = any(@streams) group by stream_id");
        command.Parameters.AddWithValue("streams", samples.Select(s => s.DeploymentId).ToArray());
        await using var reader = await command.ExecuteReaderAsync(ct);
        var appended = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        while (await reader.ReadAsync(ct)) appended[reader.GetString(0)] = reader.GetFieldValue<DateTimeOffset>(1);
        for (var i = 0; i < samples.Count; i++)
            if (appended.TryGetValue(samples[i].DeploymentId, out var at)) samples[i] = samples[i] with { ThrottleAppendedAt = at };
    }

    BenchmarkReport Report(List<FeedbackSample> samples, int expected, AdmissionFeed feed, decimal ptu, TimeSpan gap,
        IReadOnlyDictionary<string, string> hostEnvironment, IReadOnlyList<(string Role, double Cores)> cpu)
    {
        var handed = Sorted(samples.Select(s => s.HandedToThrottledMs));
        var confirmed = Sorted(samples.Select(s => s.ConfirmedToThrottledMs));
        var toConfirm = Sorted(samples.Select(s => s.HandedToConfirmedMs));
        var toAppend = Sorted(samples.Where(s => s.ThrottleAppendedAt is not null).Select(s => s.HandedToAppendedMs));
        var fromAppend = Sorted(samples.Where(s => s.ThrottleAppendedAt is not null).Select(s => s.AppendedToThrottledMs));
        var p99 = Percentiles.Of(handed, 99);
        var complete = samples.Count == expected;
        return new BenchmarkReport(Name,
        [
            new("batch handed to the SDK → throttle in the node's cache, p50", Ms(Percentiles.Of(handed, 50))),
            new("… p99", Ms(p99), "≤ 50 ms", complete && p99 <= TargetP99Ms),
            new("… max", Ms(handed.Count == 0 ? double.NaN : handed[^1])),
            new("split: hand-over → broker confirm (SDK publish, persistent), p50 / p99", $"{Ms(Percentiles.Of(toConfirm, 50))} / {Ms(Percentiles.Of(toConfirm, 99))}"),
            new("broker confirm → throttle in cache, p50 / p99 (negative: the confirm came later)", $"{Ms(Percentiles.Of(confirmed, 50))} / {Ms(Percentiles.Of(confirmed, 99))}"),
            new("split: hand-over → consumer appends the throttle, p50 / p99", $"{Ms(Percentiles.Of(toAppend, 50))} / {Ms(Percentiles.Of(toAppend, 99))}"),
            new("split: append → commit → push → cache, p50 / p99", $"{Ms(Percentiles.Of(fromAppend, 50))} / {Ms(Percentiles.Of(fromAppend, 99))}"),
            new("throttles seen", $"{samples.Count} of {expected}", $"{expected}", complete),
            new("feed: pushes applied / ignored (repeats) / pulls / gap pulls", $"{feed.PushesApplied} / {feed.PushesIgnored} / {feed.Pulls} / {feed.GapPulls}"),
        ],
        [
            $"{expected} fresh {Model} deployments of {ptu} PTU (bucket {Math.Round(ptu * 2500)} tokens), one at a time, {gap.TotalMilliseconds:0} ms apart: one record of {PromptTokens} prompt tokens each, published through MeteringPublisher (MaxLinger 0, flushed at once); {Environment.ProcessorCount} cores",
            "start = the moment the record was handed to the SDK (before publish and confirm); end = AdmissionCacheOptions.LimitApplied with state Throttled in the node's cache, fed by AdmissionFeed (own queue on the throughput.admission topic exchange, bound to the run's region); 'append' = Marten's event timestamp of deployment_throttled, same machine clock",
            $"p99 of {samples.Count} samples is by nearest rank, so with 50 samples it is the maximum, with 100 the second-slowest",
            "host " + string.Join(" ", hostEnvironment.Select(e => $"{e.Key}={e.Value}")),
            $"CPU cores used while measuring: {CpuUse.Describe(cpu)} (other = anything else on the machine, e.g. builds)",
        ]);
    }

    static readonly JsonSerializerOptions WebJson = new(JsonSerializerDefaults.Web);

    static BenchmarkReport WithCeiling(BenchmarkReport report, List<FeedbackSample> samples, IReadOnlyList<double> raw, int pushBytes)
    {
        var handed = Sorted(samples.Select(s => s.HandedToThrottledMs));
        return report with
        {
            Figures =
            [
                .. report.Figures.Take(2),
                new Ceiling(Percentiles.Of(handed, 99), Percentiles.Of(raw, 99)).Beside("p99 beside the raw broker publish → consume (ceiling of the push hop alone)", Ms),
                new("raw broker publish → consume p50 / p99 / max", $"{Ms(Percentiles.Of(raw, 50))} / {Ms(Percentiles.Of(raw, 99))} / {Ms(raw.Count == 0 ? double.NaN : raw[^1])}"),
                .. report.Figures.Skip(2),
            ],
            Conditions =
            [
                .. report.Conditions,
                $"raw ceiling, after the platform's samples with the host still up: RabbitMQ.Client with publisher confirms publishes {pushBytes} bytes (the push's size) to a topic exchange of its own; a consumer on an exclusive auto-delete queue bound region.model.# (as AdmissionFeed binds) on another connection; {raw.Count} messages one at a time, the same gap; latency = publish called → delivery handed to the consumer",
            ],
        };
    }

    static List<double> Sorted(IEnumerable<double> values) => [.. values.Order()];

    static string Ms(double milliseconds) => double.IsNaN(milliseconds) ? "n/a" : $"{milliseconds.ToString("0.0", CultureInfo.InvariantCulture)} ms";

    static void Log(string line) => Console.WriteLine($"[admission-feedback {DateTime.Now:HH:mm:ss}] {line}");

    /// <summary>One deployment's throttle: when its batch was handed over and confirmed, when the throttle was appended, when the cache applied it.</summary>
    sealed record FeedbackSample(string DeploymentId, DateTimeOffset HandedAt, long HandedTicks, long ConfirmedTicks, long ThrottledTicks, DateTimeOffset? ThrottleAppendedAt = null)
    {
        public double HandedToThrottledMs => Ms(ThrottledTicks - HandedTicks);

        public double ConfirmedToThrottledMs => Ms(ThrottledTicks - ConfirmedTicks);

        public double HandedToConfirmedMs => Ms(ConfirmedTicks - HandedTicks);

        public double HandedToAppendedMs => (ThrottleAppendedAt!.Value - HandedAt).TotalMilliseconds;

        public double AppendedToThrottledMs => HandedToThrottledMs - HandedToAppendedMs;

        static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
    }

    /// <summary>The benchmark's serving node: a metering publisher, an admission cache and the feed that keeps it current.</summary>
    sealed class ServingNode : IAsyncDisposable
    {
        readonly ConcurrentDictionary<string, TaskCompletionSource<long>> _awaited = new(StringComparer.Ordinal);
        readonly HttpClient _platform;
        readonly string _producer;
        MeteringPublisher _publisher = null!;
        long _records;

        ServingNode(HttpClient platform, string producer)
        {
            _platform = platform;
            _producer = producer;
        }

        public AdmissionFeed Feed { get; private set; } = null!;

        /// <summary>A throttle as pushed, for the raw ceiling to publish a body of its size.</summary>
        public AdmissionLimitChanged? LastThrottle { get; private set; }

        public static async Task<ServingNode> StartAsync(PlatformHost host, AdmissionFleet fleet, BenchTopology topology, CancellationToken ct)
        {
            var broker = fleet.Credentials!.On(BrokerSettings.FromEnvironment()).Uri;
            var platform = new HttpClient { BaseAddress = host.BaseAddress, DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", fleet.ServingNodeKey) } };
            var node = new ServingNode(platform, fleet.Producer!);
            await ListedAsync(platform, fleet, ct);
            var cache = new AdmissionCache(new AdmissionCacheOptions { LimitApplied = node.Applied });
            node.Feed = await AdmissionFeed.StartAsync(cache, platform, new AdmissionFeedOptions(broker) { Region = fleet.Region, Model = fleet.Model }, ct);
            node._publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(broker, fleet.Producer!) { Exchange = topology.Exchange, MaxLinger = TimeSpan.Zero }, ct);
            if (fleet.Deployments.FirstOrDefault(d => cache.Limit(d) is not { State: AdmissionState.Open }) is { } missing)
                throw new InvalidOperationException($"the feed's first pull did not bring deployment {missing} as open");
            return node;
        }

        /// <summary>
        /// Waits until the platform lists every deployment of the fleet: its admission table re-reads the store every
        /// 200 ms, so deployments bought a moment ago may not be in a pull yet (a node learns of them from its first check).
        /// </summary>
        static async Task ListedAsync(HttpClient platform, AdmissionFleet fleet, CancellationToken ct)
        {
            var deadline = Stopwatch.GetTimestamp() + 10 * Stopwatch.Frequency;
            while (true)
            {
                var listed = (await platform.GetFromJsonAsync<JsonElement>($"/v1/admission?region={fleet.Region}&model={fleet.Model}", ct))
                    .EnumerateArray().Select(l => l.GetProperty("deploymentId").GetString()).ToHashSet(StringComparer.Ordinal);
                if (fleet.Deployments.All(listed.Contains)) return;
                if (Stopwatch.GetTimestamp() > deadline) throw new InvalidOperationException($"the platform listed {listed.Count} of the fleet's {fleet.Deployments.Count} deployments after 10 s");
                await Task.Delay(100, ct);
            }
        }

        /// <summary>Meters the over-bucket batch and waits for the deployment's throttle to arrive in the cache; null if it did not within the timeout.</summary>
        public async Task<FeedbackSample?> ThrottleAsync(string deploymentId, CancellationToken ct)
        {
            var arrived = _awaited.GetOrAdd(deploymentId, _ => new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously));
            var id = $"{_producer}-{++_records}";
            var handedAt = DateTimeOffset.UtcNow;
            var handed = Stopwatch.GetTimestamp();
            await _publisher.RecordAsync(new MeteringRecord(id, deploymentId, id, PromptTokens, 0, 0, false, PromptTokens, handedAt, handedAt), ct);
            await _publisher.FlushAsync(ct);
            var confirmed = Stopwatch.GetTimestamp();
            try
            {
                var throttled = await arrived.Task.WaitAsync(ThrottleTimeout, ct);
                return new FeedbackSample(deploymentId, handedAt, handed, confirmed, throttled);
            }
            catch (TimeoutException)
            {
                return null;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _publisher.DisposeAsync();
            await Feed.DisposeAsync();
            _platform.Dispose();
        }

        // On the feed's consumer thread: only a timestamp and a completion, nothing that could delay the next push.
        void Applied(AdmissionLimitChanged limit, LimitUpdate update)
        {
            if (limit.State != AdmissionState.Throttled || update == LimitUpdate.Stale) return;
            var now = Stopwatch.GetTimestamp();
            LastThrottle = limit;
            _awaited.GetOrAdd(limit.DeploymentId, _ => new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult(now);
        }
    }
}
