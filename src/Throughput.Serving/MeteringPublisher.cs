using System.Diagnostics;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// Publishes a serving node's metering records to RabbitMQ as metering batches: raw JSON, persistent, with
/// publisher confirms. Records are batched per lane of deployments (<see cref="MeteringTopology.LaneOf"/>). Each batch
/// takes the next value of one sequence per producer and keeps it, with its body, through every republish; a lane has
/// at most one batch in flight, so its batches reach the queue in sequence order, and the platform's dedupe ledger
/// counts every record exactly once. Thread-safe.
/// </summary>
public sealed class MeteringPublisher : IAsyncDisposable
{
    static readonly Dictionary<string, object?> VersionHeaders = new() { [MeteringTopology.VersionHeader] = MeteringTopology.CurrentVersion };

    /// <summary>
    /// Traces each batch's publish when something listens (an OpenTelemetry tracer provider with this source): the
    /// publish is a producer span whose W3C context travels in the message's <c>traceparent</c> header to the platform's
    /// consumer span. With no listener nothing is created and the headers stay as they are.
    /// </summary>
    public static readonly ActivitySource Tracing = new(ActivitySourceName);

    public const string ActivitySourceName = "Throughput.Serving";

    readonly MeteringPublisherOptions _options;
    readonly ConnectionFactory _factory;
    readonly MeteringBuffer _buffer;
    readonly Lock _gate = new();
    readonly SemaphoreSlim _space; // one slot per record recorded and not yet confirmed
    readonly SemaphoreSlim _lingerWake = new(0, 1);
    readonly SemaphoreSlim _linkGate = new(1, 1);
    readonly CancellationTokenSource _stopping = new();
    readonly List<(long UpTo, TaskCompletionSource Done)> _flushes = [];
    readonly Task _lingerLoop;

    // Guarded by _gate.
    bool _closed;
    bool _lingerParked;
    int _senders;
    TaskCompletionSource? _sendersStopped;

    // Replaced under _linkGate, read without it.
    volatile IChannel? _channel;
    IConnection? _connection;

    long _batchesPublished;
    long _recordsConfirmed;
    long _republishes;
    long _reconnects;

    MeteringPublisher(MeteringPublisherOptions options)
    {
        _options = options;
        _factory = new ConnectionFactory
        {
            Uri = options.Broker,
            ClientProvidedName = options.EffectiveConnectionName,
            // One owner of reconnects: the publisher knows which batches are unconfirmed and republishes them in order.
            AutomaticRecoveryEnabled = false,
            TopologyRecoveryEnabled = false,
        };
        _buffer = new MeteringBuffer(options.MaxBatchRecords, options.MaxLinger, options.InitialSequence, TimeProvider.System);
        _space = new SemaphoreSlim(options.BufferCapacity, options.BufferCapacity);
        _lingerLoop = Task.Run(SealLingeringAsync);
    }

    /// <summary>Connects and checks the exchange; fails if the broker cannot be reached now, so a misconfiguration shows at startup.</summary>
    public static async Task<MeteringPublisher> CreateAsync(MeteringPublisherOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var publisher = new MeteringPublisher(options);
        try
        {
            await publisher.ConnectAsync(cancellationToken);
            return publisher;
        }
        catch
        {
            await publisher.DisposeAsync();
            throw;
        }
    }

    public string ProducerId => _options.ProducerId;

    /// <summary>Batches the broker has confirmed, each counted once however often it was republished.</summary>
    public long BatchesPublished => Interlocked.Read(ref _batchesPublished);

    public long RecordsConfirmed => Interlocked.Read(ref _recordsConfirmed);

    /// <summary>Publish attempts beyond the first of their batch (after a nack, a return or a lost connection).</summary>
    public long Republishes => Interlocked.Read(ref _republishes);

    /// <summary>Connections opened after the first one.</summary>
    public long Reconnects => Interlocked.Read(ref _reconnects);

    /// <summary>Records recorded and not yet confirmed by the broker.</summary>
    public long RecordsBuffered => _options.BufferCapacity - _space.CurrentCount;

    /// <summary>Buffers a record for publishing; waits while the buffer is full.</summary>
    public ValueTask RecordAsync(MeteringRecord record, CancellationToken cancellationToken = default)
    {
        Check(record);
        if (_space.Wait(0, cancellationToken))
        {
            Accept(record);
            return ValueTask.CompletedTask;
        }
        return WaitForSpaceAsync(record, cancellationToken);
    }

    /// <summary>Buffers a record for publishing; false, and nothing buffered, when the buffer is full.</summary>
    public bool TryRecord(MeteringRecord record)
    {
        Check(record);
        if (!_space.Wait(0)) return false;
        Accept(record);
        return true;
    }

    /// <summary>Seals every open batch and completes when all records recorded before the call are confirmed by the broker.</summary>
    public Task FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_stopping.IsCancellationRequested, this);
        var ready = new List<SealedBatch>();
        TaskCompletionSource? done = null;
        lock (_gate)
        {
            _buffer.SealAll(ready);
            _senders += ready.Count;
            var upTo = _buffer.LastSequence;
            if (_buffer.LowestUnconfirmedSequence() <= upTo)
            {
                done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _flushes.Add((upTo, done));
            }
        }
        foreach (var batch in ready) Send(batch);
        return done is null ? Task.CompletedTask : done.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Refuses new records, flushes for at most <see cref="MeteringPublisherOptions.DisposeTimeout"/>, then closes the connection.
    /// Records still unconfirmed after the timeout are abandoned; <see cref="RecordsBuffered"/> says how many.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
        }
        try
        {
            await FlushAsync().WaitAsync(_options.DisposeTimeout);
        }
        catch (TimeoutException)
        {
            // Bounded by design: a serving node shutting down must not hang on a broker that is gone.
        }

        await _stopping.CancelAsync();
        Task sendersStopped;
        lock (_gate)
        {
            foreach (var (_, done) in _flushes) done.TrySetException(new ObjectDisposedException(nameof(MeteringPublisher)));
            _flushes.Clear();
            sendersStopped = _senders == 0 ? Task.CompletedTask : (_sendersStopped = new(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
        await sendersStopped;
        await _lingerLoop;
        await _linkGate.WaitAsync();
        await DropLinkAsync(graceful: true);
        _stopping.Dispose();
    }

    static void Check(MeteringRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentException.ThrowIfNullOrEmpty(record.DeploymentId, nameof(record));
        ArgumentNullException.ThrowIfNull(record.RecordId, nameof(record));
    }

    async ValueTask WaitForSpaceAsync(MeteringRecord record, CancellationToken cancellationToken)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        try
        {
            await _space.WaitAsync(wait.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ObjectDisposedException(nameof(MeteringPublisher));
        }
        Accept(record);
    }

    /// <summary>Adds a record whose buffer slot is already taken.</summary>
    void Accept(MeteringRecord record)
    {
        SealedBatch? ready;
        var wakeLinger = false;
        lock (_gate)
        {
            if (_closed)
            {
                _space.Release();
                throw new ObjectDisposedException(nameof(MeteringPublisher));
            }
            ready = _buffer.Add(record);
            if (ready is not null) _senders++;
            if (_lingerParked && _buffer.OpenBatches > 0)
            {
                _lingerParked = false;
                wakeLinger = true;
            }
        }
        if (wakeLinger) _lingerWake.Release();
        if (ready is not null) Send(ready);
    }

    /// <summary>Seals batches whose linger time is up; parks while no batch is open so an idle node costs nothing.</summary>
    async Task SealLingeringAsync()
    {
        var tick = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, _options.MaxLinger.Ticks / 4));
        using var timer = new PeriodicTimer(tick);
        var ready = new List<SealedBatch>();
        try
        {
            while (true)
            {
                bool park;
                lock (_gate)
                {
                    _buffer.SealExpired(ready);
                    _senders += ready.Count;
                    park = _lingerParked = _buffer.OpenBatches == 0;
                }
                foreach (var batch in ready) Send(batch);
                ready.Clear();
                if (park) await _lingerWake.WaitAsync(_stopping.Token);
                else await timer.WaitForNextTickAsync(_stopping.Token);
            }
        }
        catch (OperationCanceledException)
        {
            // Disposed.
        }
    }

    /// <summary>Publishes a lane's batch, then each next one the confirm releases, until the lane has nothing ready.</summary>
    void Send(SealedBatch batch) => _ = Task.Run(() => SendLaneAsync(batch));

    async Task SendLaneAsync(SealedBatch first)
    {
        var batch = first;
        try
        {
            while (batch is not null)
            {
                await PublishUntilConfirmedAsync(batch, _stopping.Token);
                var records = batch.Records.Count;
                Interlocked.Increment(ref _batchesPublished);
                Interlocked.Add(ref _recordsConfirmed, records);
                _space.Release(records);
                lock (_gate)
                {
                    batch = _buffer.Confirm(batch);
                    CompleteFlushes();
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            // Disposed after its timeout: what is unconfirmed is abandoned.
        }
        catch (Exception e)
        {
            // Not a broker failure (those are retried): a bug or an unwritable record. The lane stalls, visibly.
            _options.PublishFailed?.Invoke(e);
        }
        finally
        {
            lock (_gate)
            {
                if (--_senders == 0) _sendersStopped?.TrySetResult();
            }
        }
    }

    /// <summary>Publishes one batch until the broker confirms it: same sequence, same body, however many attempts.</summary>
    async Task PublishUntilConfirmedAsync(SealedBatch batch, CancellationToken stopping)
    {
        using var body = MeteringBatchJson.Serialize(_options.ProducerId, batch);
        using var publish = Tracing.StartActivity("metering publish", ActivityKind.Producer);
        publish?.SetTag("messaging.system", "rabbitmq").SetTag("messaging.destination.name", _options.Exchange)
            .SetTag("messaging.rabbitmq.destination.routing_key", batch.RoutingKey).SetTag("throughput.producer_id", _options.ProducerId).SetTag("throughput.sequence", batch.Sequence).SetTag("throughput.records", batch.Records.Count);
        var properties = new BasicProperties
        {
            ContentType = MeteringTopology.ContentType,
            DeliveryMode = DeliveryModes.Persistent,
            MessageId = $"{_options.ProducerId}:{batch.Sequence}",
            // The broker checks it against this connection's user; the platform bills a producer only from its registered user.
            UserId = _factory.UserName,
            Headers = publish is null ? VersionHeaders : new Dictionary<string, object?>(VersionHeaders) { [MeteringTopology.TraceParentHeader] = publish.Id },
        };
        IChannel? failed = null;
        for (var attempt = 0; ; attempt++)
        {
            if (attempt > 0)
            {
                await Task.Delay(Backoff(attempt - 1, _options.RetryDelay, _options.MaxRetryDelay), stopping);
                Interlocked.Increment(ref _republishes);
            }
            var channel = await ChannelAsync(failed, stopping);
            using var confirmTimeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            confirmTimeout.CancelAfter(_options.ConfirmTimeout);
            var started = Stopwatch.GetTimestamp();
            try
            {
                await channel.BasicPublishAsync(_options.Exchange, batch.RoutingKey, mandatory: true, properties, body.Memory, confirmTimeout.Token);
                _options.ConfirmLatency?.Invoke(Stopwatch.GetElapsedTime(started));
                return;
            }
            catch (PublishException e)
            {
                // Nacked, or returned because no queue is bound yet: the channel is fine, the batch waits and goes again.
                _options.PublishFailed?.Invoke(e);
            }
            catch (Exception e) when (!stopping.IsCancellationRequested)
            {
                // Channel or connection lost, or no confirm in time: the outcome is unknown, so publish again on a new channel.
                _options.PublishFailed?.Invoke(e);
                failed = channel;
            }
        }
    }

    /// <summary>Exponential backoff from <paramref name="first"/>, doubling per attempt, capped.</summary>
    internal static TimeSpan Backoff(int attempt, TimeSpan first, TimeSpan cap) =>
        TimeSpan.FromTicks(Math.Min(cap.Ticks, first.Ticks << Math.Min(attempt, 20)));

    ValueTask<IChannel> ChannelAsync(IChannel? failed, CancellationToken stopping) =>
        _channel is { IsOpen: true } channel && !ReferenceEquals(channel, failed)
            ? ValueTask.FromResult(channel)
            : new ValueTask<IChannel>(ReconnectAsync(failed, stopping));

    /// <summary>Replaces the link once for all senders that saw it fail; retries with backoff until the broker is back.</summary>
    async Task<IChannel> ReconnectAsync(IChannel? failed, CancellationToken stopping)
    {
        await _linkGate.WaitAsync(stopping);
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                if (_channel is { IsOpen: true } current && !ReferenceEquals(current, failed)) return current;
                try
                {
                    var channel = await ConnectAsync(stopping);
                    Interlocked.Increment(ref _reconnects);
                    return channel;
                }
                catch (Exception e) when (!stopping.IsCancellationRequested)
                {
                    _options.PublishFailed?.Invoke(e);
                    await Task.Delay(Backoff(attempt, _options.RetryDelay, _options.MaxRetryDelay), stopping);
                }
            }
        }
        finally
        {
            _linkGate.Release();
        }
    }

    async Task<IChannel> ConnectAsync(CancellationToken cancellationToken)
    {
        await DropLinkAsync(graceful: false);
        var connection = await BrokerLink.ConnectAsync(_factory, _options.BrokerNodes, cancellationToken);
        try
        {
            await EnsureExchangeAsync(connection, cancellationToken);
            var channel = await connection.CreateChannelAsync(
                new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), cancellationToken);
            _connection = connection;
            _channel = channel;
            return channel;
        }
        catch
        {
            await connection.AbortAsync(CancellationToken.None); // the caller may be cancelling: still release the socket
            await connection.DisposeAsync();
            throw;
        }
    }

    Task EnsureExchangeAsync(IConnection connection, CancellationToken cancellationToken) =>
        BrokerLink.EnsureExchangeAsync(connection, _options.Exchange, MeteringTopology.ExchangeType, cancellationToken);

    Task DropLinkAsync(bool graceful)
    {
        var connection = _connection;
        _channel = null;
        _connection = null;
        return BrokerLink.DropAsync(connection, graceful);
    }

    void CompleteFlushes()
    {
        if (_flushes.Count == 0) return;
        var lowest = _buffer.LowestUnconfirmedSequence() ?? long.MaxValue;
        _flushes.RemoveAll(flush =>
        {
            if (flush.UpTo >= lowest) return false;
            flush.Done.TrySetResult();
            return true;
        });
    }
}
