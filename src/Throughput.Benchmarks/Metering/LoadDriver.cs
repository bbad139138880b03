using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Benchmarks.Metering;

/// <summary>How hard and how the load is driven.</summary>
/// <param name="Rate">Records per second offered in total; 0 offers as fast as the in-flight limit lets.</param>
/// <param name="InFlight">Records handed to the SDK and not yet counted durable, at most: with it the load settles at the
/// rate the whole path sustains, instead of filling the broker's queues (which no real node could keep up for long).</param>
public sealed record LoadShape(int Publishers, int Rate, int InFlight, int MaxBatchRecords, TimeSpan MaxLinger);

/// <summary>
/// Serving nodes in one process: one <see cref="MeteringPublisher"/> per producer id, each fed by its own loop that
/// hands records round-robin over the deployments to the SDK, stamped with the moment it hands them over.
/// </summary>
public sealed class LoadDriver : IAsyncDisposable
{
    const int Chunk = 256; // records between checks of the in-flight limit and the pace

    readonly LoadShape _shape;
    readonly IReadOnlyList<MeteringPublisher> _publishers;
    readonly string[] _deployments;
    readonly Func<long> _durable;
    readonly CancellationTokenSource _stop = new();
    readonly List<Task> _loops = [];
    readonly StrongBox<long> _publishFailures;
    long _handedOver;

    LoadDriver(LoadShape shape, IReadOnlyList<MeteringPublisher> publishers, IReadOnlyList<string> deployments, Func<long> durable, StrongBox<long> publishFailures)
    {
        _publishFailures = publishFailures;
        _shape = shape;
        _publishers = publishers;
        _deployments = [.. deployments];
        _durable = durable;
    }

    /// <summary>Records given to the SDK so far.</summary>
    public long HandedOver => Interlocked.Read(ref _handedOver);

    /// <summary>Records the broker has confirmed, over all publishers.</summary>
    public long Confirmed => _publishers.Sum(p => p.RecordsConfirmed);

    public long Republishes => _publishers.Sum(p => p.Republishes);

    public long PublishFailures => Interlocked.Read(ref _publishFailures.Value);

    public static async Task<LoadDriver> ConnectAsync(LoadShape shape, MeteringFleet fleet, string exchange, Func<long> durable, CancellationToken ct)
    {
        var broker = BrokerSettings.FromEnvironment().Uri;
        var publishers = new List<MeteringPublisher>();
        var failures = new StrongBox<long>();
        foreach (var producer in fleet.Producers)
        {
            publishers.Add(await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(broker, producer)
            {
                Exchange = exchange,
                MaxBatchRecords = shape.MaxBatchRecords,
                MaxLinger = shape.MaxLinger,
                BufferCapacity = Math.Max(shape.InFlight, shape.MaxBatchRecords),
                PublishFailed = _ => Interlocked.Increment(ref failures.Value),
            }, ct));
        }
        return new LoadDriver(shape, publishers, fleet.Deployments, durable, failures);
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
                for (var i = 0; i < Chunk; i++)
                {
                    var id = prefix + (sent + i).ToString(CultureInfo.InvariantCulture);
                    var now = DateTimeOffset.UtcNow;
                    var deployment = _deployments[next];
                    next = next + 1 == _deployments.Length ? 0 : next + 1;
                    // Not cancellable: a record either goes to the SDK whole or not at all, so the count stays exact.
                    await publisher.RecordAsync(new MeteringRecord(id, deployment, id, 120, 0, 30, false, 240, now, now), CancellationToken.None);
                }
                sent += Chunk;
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
