using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Throughput.Benchmarks.Harness;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Benchmarks.Metering;

/// <summary>How hard and how the load is driven.</summary>
/// <param name="Rate">Records per second offered in total; 0 offers as fast as the in-flight limit lets.</param>
/// <param name="InFlight">Records handed to the SDK and not yet counted durable, at most: with it the load settles at the
/// rate the whole path sustains, instead of filling the broker's queues (which no real node could keep up for long).</param>
public sealed record LoadShape(int Publishers, int Rate, int InFlight, int MaxBatchRecords, TimeSpan MaxLinger)
{
    /// <summary>The options a benchmark driving this load takes, <c>--rate</c> and <c>--in-flight</c> defaulting to the given values.</summary>
    public static IEnumerable<(string Option, string Meaning)> Options(int defaultRate, int defaultInFlight) =>
    [
        ("publishers", "SDK publishers, each its own producer id and connection (2)"),
        ("rate", $"records/s offered in total; 0 = as fast as --in-flight allows ({defaultRate})"),
        ("in-flight", $"records handed to the SDK and not yet durable, at most ({defaultInFlight})"),
        ("batch-records", "SDK MaxBatchRecords (1000)"),
        ("linger-ms", "SDK MaxLinger in ms (20)"),
    ];

    public static LoadShape From(Harness.BenchOptions options, int defaultRate, int defaultInFlight) => new(
        options.Count("publishers", 2), options.Count("rate", defaultRate), options.Count("in-flight", defaultInFlight),
        options.Count("batch-records", 1000), options.Milliseconds("linger-ms", TimeSpan.FromMilliseconds(20)));
}

/// <summary>The record a feeding loop hands over as its <paramref name="n"/>-th, with its id, deployment and the moment of hand-over.</summary>
public delegate MeteringRecord RecordMaker(string id, string deployment, long n, DateTimeOffset now);

/// <summary>Records and tokens, all and spilled only: what was handed over, or what the platform counted.</summary>
public readonly record struct TokenTally(long Records, long Prompt, long Cached, long Output, long SpilledRecords, long SpilledPrompt, long SpilledCached, long SpilledOutput)
{
    public TokenTally Add(MeteringRecord r) => new(Records + 1, Prompt + r.PromptTokens, Cached + r.CachedTokens, Output + r.OutputTokens,
        SpilledRecords + (r.Spilled ? 1 : 0), SpilledPrompt + (r.Spilled ? r.PromptTokens : 0), SpilledCached + (r.Spilled ? r.CachedTokens : 0), SpilledOutput + (r.Spilled ? r.OutputTokens : 0));

    public TokenTally Add(TokenTally o) => new(Records + o.Records, Prompt + o.Prompt, Cached + o.Cached, Output + o.Output,
        SpilledRecords + o.SpilledRecords, SpilledPrompt + o.SpilledPrompt, SpilledCached + o.SpilledCached, SpilledOutput + o.SpilledOutput);
}

/// <summary>
/// Serving nodes in one process: one <see cref="MeteringPublisher"/> per producer id, each fed by its own loop that
/// hands records round-robin over the deployments to the SDK, stamped with the moment it hands them over.
/// </summary>
public sealed class LoadDriver : IAsyncDisposable
{
    const int Chunk = 256; // records between checks of the in-flight limit and the pace

    /// <summary>The metering benchmark's record: the same tokens every time, nothing spilled.</summary>
    public static readonly RecordMaker Uniform = (id, deployment, _, now) => new MeteringRecord(id, deployment, id, 120, 0, 30, false, 240, now, now);

    readonly LoadShape _shape;
    readonly IReadOnlyList<MeteringPublisher> _publishers;
    readonly string[] _deployments;
    readonly Func<long> _durable;
    readonly CancellationTokenSource _stop = new();
    readonly List<Task> _loops = [];
    readonly StrongBox<long> _publishFailures;
    readonly RecordMaker _records;
    readonly Lock _tallyGate = new();
    readonly ConfirmTimes _confirms;
    TokenTally _handedTokens;
    long _handedOver;

    LoadDriver(LoadShape shape, IReadOnlyList<MeteringPublisher> publishers, IReadOnlyList<string> deployments, Func<long> durable, StrongBox<long> publishFailures, RecordMaker records,
        ConfirmTimes confirms)
    {
        _confirms = confirms;
        _publishFailures = publishFailures;
        _records = records;
        _shape = shape;
        _publishers = publishers;
        _deployments = [.. deployments];
        _durable = durable;
    }

    /// <summary>The SDK's publish → broker confirm latency of the batches confirmed between two moments, in ms, at a percentile.</summary>
    public double ConfirmLatency(DateTimeOffset from, DateTimeOffset to, double percentile) => _confirms.Percentile(from, to, percentile);

    /// <summary>Records given to the SDK so far.</summary>
    public long HandedOver => Interlocked.Read(ref _handedOver);

    /// <summary>Records the broker has confirmed, over all publishers.</summary>
    public long Confirmed => _publishers.Sum(p => p.RecordsConfirmed);

    public long Republishes => _publishers.Sum(p => p.Republishes);

    /// <summary>Batches the broker has confirmed, over all publishers, each counted once however often it was republished.</summary>
    public long BatchesConfirmed => _publishers.Sum(p => p.BatchesPublished);

    public long Reconnects => _publishers.Sum(p => p.Reconnects);

    public long PublishFailures => Interlocked.Read(ref _publishFailures.Value);

    /// <summary>What the records handed over so far hold, up to the last whole chunk.</summary>
    public TokenTally HandedOverTokens
    {
        get
        {
            lock (_tallyGate) return _handedTokens;
        }
    }

    public static async Task<LoadDriver> ConnectAsync(LoadShape shape, MeteringFleet fleet, string exchange, Func<long> durable, CancellationToken ct,
        BrokerSettings? broker = null, RecordMaker? records = null)
    {
        broker ??= BrokerSettings.FromEnvironment();
        var publishers = new List<MeteringPublisher>();
        var failures = new StrongBox<long>();
        var confirms = new ConfirmTimes();
        foreach (var producer in fleet.Producers)
        {
            publishers.Add(await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(fleet.Credentials[producer].On(broker).Uri, producer)
            {
                BrokerNodes = broker.Endpoints,
                Exchange = exchange,
                MaxBatchRecords = shape.MaxBatchRecords,
                MaxLinger = shape.MaxLinger,
                BufferCapacity = Math.Max(shape.InFlight, shape.MaxBatchRecords),
                PublishFailed = _ => Interlocked.Increment(ref failures.Value),
                ConfirmLatency = confirms.Add,
            }, ct));
        }
        return new LoadDriver(shape, publishers, fleet.Deployments, durable, failures, records ?? Uniform, confirms);
    }

    public void Start()
    {
        var ratePerLoop = (double)_shape.Rate / _publishers.Count;
        for (var i = 0; i < _publishers.Count; i++)
        {
            var publisher = _publishers[i];
            var offset = i;
            _loops.Add(Task.Run(() => FeedAsync(publisher, offset, ratePerLoop, _stop.Token)));
        }
    }

    /// <summary>Stops handing over records and waits until the broker has confirmed everything handed over.</summary>
    public async Task StopAsync(TimeSpan flushTimeout)
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_loops);
        await Task.WhenAll(_publishers.Select(p => p.FlushAsync().WaitAsync(flushTimeout)));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested) await _stop.CancelAsync();
        await Task.WhenAll(_loops).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (var publisher in _publishers) await publisher.DisposeAsync();
        _stop.Dispose();
    }

    async Task FeedAsync(MeteringPublisher publisher, int offset, double rate, CancellationToken stop)
    {
        var prefix = publisher.ProducerId + "-";
        var started = Stopwatch.GetTimestamp();
        long sent = 0;
        var next = offset;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await WaitForRoomAsync(stop);
                if (rate > 0) await PaceAsync(started, sent, rate, stop);
                var chunk = default(TokenTally);
                for (var i = 0; i < Chunk; i++)
                {
                    var id = prefix + (sent + i).ToString(CultureInfo.InvariantCulture);
                    var deployment = _deployments[next];
                    next = next + 1 == _deployments.Length ? 0 : next + 1;
                    var record = _records(id, deployment, sent + i, DateTimeOffset.UtcNow);
                    // Not cancellable: a record either goes to the SDK whole or not at all, so the count stays exact.
                    await publisher.RecordAsync(record, CancellationToken.None);
                    chunk = chunk.Add(record);
                }
                sent += Chunk;
                lock (_tallyGate) _handedTokens = _handedTokens.Add(chunk);
                Interlocked.Add(ref _handedOver, Chunk);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopped between chunks.
        }
    }

    async Task WaitForRoomAsync(CancellationToken stop)
    {
        while (HandedOver - _durable() >= _shape.InFlight) await Task.Delay(1, stop);
    }

    static async Task PaceAsync(long started, long sent, double rate, CancellationToken stop)
    {
        while (sent >= rate * Stopwatch.GetElapsedTime(started).TotalSeconds) await Task.Delay(1, stop);
    }
}

/// <summary>Each confirmed batch's publish → confirm latency with the moment it came, from the publishers' threads.</summary>
sealed class ConfirmTimes
{
    readonly Lock _gate = new();
    readonly List<(DateTimeOffset At, double Ms)> _confirms = [];

    public void Add(TimeSpan latency)
    {
        lock (_gate) _confirms.Add((DateTimeOffset.UtcNow, latency.TotalMilliseconds));
    }

    public double Percentile(DateTimeOffset from, DateTimeOffset to, double percentile)
    {
        List<double> window;
        lock (_gate) window = [.. _confirms.Where(c => c.At >= from && c.At < to).Select(c => c.Ms)];
        if (window.Count == 0) return 0;
        window.Sort();
        return Percentiles.Of(window, percentile);
    }
}
