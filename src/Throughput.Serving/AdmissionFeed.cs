using System.Net.Http.Json;
using System.Text.Json;
using System.Threading.Channels;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// Keeps an <see cref="AdmissionCache"/> current for a scope (region, model): pulls every limit in scope over HTTP at start,
/// follows the pushes on the admission topic exchange through its own exclusive, auto-delete, server-named queue, pulls a
/// deployment again when a push skips versions, pulls everything again after a reconnect and every
/// <see cref="AdmissionFeedOptions.ResyncInterval"/>, and asks again about throttled deployments whose retry-after has passed.
/// The HTTP client must carry the platform's base address and a ServingNode (or Operator) key. Failures never clear the
/// cache: it keeps admitting with the last limits it knows. When the cache takes leases, the feed also renews them (see
/// <see cref="AdmissionCacheOptions.Leases"/>), takes its own leases pushed on <see cref="AdmissionLeaseTopology.Exchange"/> (bound
/// with the same key), and gives them back when disposed.
/// </summary>
public sealed class AdmissionFeed : IAsyncDisposable
{
    static readonly TimeSpan Tick = TimeSpan.FromSeconds(1);

    // The platform answers pulls from a read model that may trail its pushes by a moment: a pull right after a reconnect
    // can miss the change whose push was lost with the connection, so a second pull follows a little later.
    static readonly TimeSpan FollowUpPull = TimeSpan.FromSeconds(2);

    readonly AdmissionCache _cache;
    readonly HttpClient _platform;
    readonly AdmissionFeedOptions _options;
    readonly ConnectionFactory _factory;
    readonly CancellationTokenSource _stopping = new();
    readonly Channel<string> _gapPulls = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
    readonly SemaphoreSlim _wake = new(0, 1);
    readonly SemaphoreSlim _linkGate = new(1, 1);
    readonly List<Task> _loops = [];
    readonly LeaseRenewer? _leases;

    // Deployments whose cached limit was newer than a pull's answer: that cached version, and when it was first seen so.
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long Version, long Since)> _ahead = new(StringComparer.Ordinal);

    IConnection? _connection;
    TaskCompletionSource _linkLost = new(TaskCreationOptions.RunContinuationsAsynchronously);
    volatile bool _resyncRequested;
    long _followUpAtTicks;
    long _lastSyncedAtTicks;
    long _pulls;
    long _gapPullCount;
    long _reconnects;
    long _pushesApplied;
    long _pushesIgnored;
    long _pushesMalformed;
    long _overruled;
    long _pushesUntrusted;
    long _leasePushes;

    AdmissionFeed(AdmissionCache cache, HttpClient platform, AdmissionFeedOptions options)
    {
        _cache = cache;
        _platform = platform;
        _options = options;
        _factory = new ConnectionFactory
        {
            Uri = options.Broker,
            ClientProvidedName = options.EffectiveConnectionName,
            // The feed owns reconnects: after one it must pull everything again, which the client's recovery would not tell it.
            AutomaticRecoveryEnabled = false,
            TopologyRecoveryEnabled = false,
        };
        if (cache.Leases) _leases = new LeaseRenewer(cache, platform, options);
    }

    /// <summary>
    /// Subscribes (fails if the broker cannot be reached now, so a misconfiguration shows at startup), then pulls every limit in
    /// scope. A failed first pull is reported and retried in the background; <see cref="LastSyncedAt"/> says when one succeeded.
    /// </summary>
    public static async Task<AdmissionFeed> StartAsync(AdmissionCache cache, HttpClient platform, AdmissionFeedOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(platform);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var feed = new AdmissionFeed(cache, platform, options);
        try
        {
            await feed.ConnectAsync(cancellationToken);
            // Subscribed before pulling, so no change can fall between the two; versions sort out the overlap.
            if (!await feed.TryResyncAsync(cancellationToken)) feed._resyncRequested = true;
        }
        catch
        {
            await feed.DisposeAsync();
            throw;
        }
        feed._loops.Add(Task.Run(feed.KeepLinkAsync, CancellationToken.None));
        feed._loops.Add(Task.Run(feed.PullGapsAsync, CancellationToken.None));
        feed._loops.Add(Task.Run(feed.ResyncPeriodicallyAsync, CancellationToken.None));
        if (feed._leases is { } leases) feed._loops.Add(Task.Run(() => leases.RunAsync(feed._stopping.Token), CancellationToken.None));
        return feed;
    }

    public AdmissionCache Cache => _cache;

    /// <summary>When every limit in scope was last pulled successfully; null before the first time.</summary>
    public DateTimeOffset? LastSyncedAt => Interlocked.Read(ref _lastSyncedAtTicks) is var ticks and > 0 ? new DateTimeOffset(ticks, TimeSpan.Zero) : null;

    /// <summary>Successful HTTP pulls of any kind.</summary>
    public long Pulls => Interlocked.Read(ref _pulls);

    /// <summary>Deployments pulled because a push skipped versions.</summary>
    public long GapPulls => Interlocked.Read(ref _gapPullCount);

    /// <summary>Lease renewals the platform answered (0 when the cache does not take leases).</summary>
    public long LeaseRenewals => _leases?.Renewals ?? 0;

    /// <summary>Connections to the broker opened after the first.</summary>
    public long Reconnects => Interlocked.Read(ref _reconnects);

    public long PushesApplied => Interlocked.Read(ref _pushesApplied);

    /// <summary>Pushes no newer than what the cache held.</summary>
    public long PushesIgnored => Interlocked.Read(ref _pushesIgnored);

    public long PushesMalformed => Interlocked.Read(ref _pushesMalformed);

    /// <summary>Pushed leases of this process's received (others' are skipped); each applied when newer than the one held.</summary>
    public long LeasePushes => Interlocked.Read(ref _leasePushes);

    /// <summary>Pushes not stamped with the platform's broker user: ignored.</summary>
    public long PushesUntrusted => Interlocked.Read(ref _pushesUntrusted);

    /// <summary>Cached limits a pull replaced because the platform did not stand behind their newer version.</summary>
    public long Overruled => Interlocked.Read(ref _overruled);

    /// <summary>Pulls every limit in scope now and applies it; false (and reported) when the platform did not answer.</summary>
    public Task<bool> ResyncAsync(CancellationToken cancellationToken = default) => TryResyncAsync(cancellationToken);

    /// <summary>Pulls these deployments' limits now, applies them and returns them (those the platform knows).</summary>
    public async Task<IReadOnlyList<AdmissionLimitChanged>> PullAsync(IEnumerable<string> deploymentIds, CancellationToken cancellationToken = default)
    {
        var query = new AdmissionQuery([.. deploymentIds.Distinct(StringComparer.Ordinal)]);
        if (query.DeploymentIds.Count == 0) return [];
        using var timeout = Timeout(cancellationToken);
        using var response = await _platform.PostAsJsonAsync(new Uri("/v1/admission/query", UriKind.Relative), query, AdmissionJson.Default.AdmissionQuery, timeout.Token);
        response.EnsureSuccessStatusCode();
        var limits = await response.Content.ReadFromJsonAsync(AdmissionJson.Default.AdmissionLimitChangedArray, timeout.Token) ?? [];
        ApplyPulled(limits);
        return limits;
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested) return;
        await _stopping.CancelAsync();
        _gapPulls.Writer.TryComplete();
        try
        {
            await Task.WhenAll(_loops);
        }
        catch (Exception)
        {
            // Stopping: whatever a loop was doing was cancelled with it.
        }
        if (_leases is not null) await _leases.ReleaseAsync();
        await _linkGate.WaitAsync();
        await DropLinkAsync(graceful: true);
        _stopping.Dispose();
    }

    async Task<bool> TryResyncAsync(CancellationToken cancellationToken)
    {
        var query = string.Join('&', new[] { ("region", _options.Region), ("model", _options.Model) }
            .Where(p => p.Item2 is not null).Select(p => $"{p.Item1}={Uri.EscapeDataString(p.Item2!)}"));
        try
        {
            using var timeout = Timeout(cancellationToken);
            var limits = await _platform.GetFromJsonAsync(new Uri(query.Length == 0 ? "/v1/admission" : "/v1/admission?" + query, UriKind.Relative),
                AdmissionJson.Default.AdmissionLimitChangedArray, timeout.Token) ?? [];
            ApplyPulled(limits);
            Interlocked.Exchange(ref _lastSyncedAtTicks, DateTimeOffset.UtcNow.UtcTicks);
            return true;
        }
        catch (Exception e) when (!_stopping.IsCancellationRequested)
        {
            _options.Failed?.Invoke(e);
            return false;
        }
    }

    /// <summary>
    /// A pull is authoritative. Its answer may trail a push by a moment (the platform reads a projection), so a cached
    /// limit newer than the pulled one is kept once, and a follow-up pull is asked for; if the same cached version is still
    /// ahead on a pull at least <see cref="FollowUpPull"/> later, the platform does not stand behind it, and the pulled
    /// limit replaces it.
    /// </summary>
    void ApplyPulled(AdmissionLimitChanged[] limits)
    {
        Interlocked.Increment(ref _pulls);
        var now = DateTime.UtcNow.Ticks;
        foreach (var limit in limits)
        {
            if (_cache.Apply(limit) != LimitUpdate.Stale || _cache.Limit(limit.DeploymentId) is not { } held || held.Version <= limit.Version)
            {
                _ahead.TryRemove(limit.DeploymentId, out _);
                continue;
            }
            // A newer push since then restarts the wait: only the same version, still unconfirmed two seconds on, is overruled.
            var ahead = _ahead.AddOrUpdate(limit.DeploymentId, (held.Version, now), (_, seen) => seen.Version == held.Version ? seen : (held.Version, now));
            if (now - ahead.Since >= FollowUpPull.Ticks)
            {
                _cache.Overrule(limit);
                _ahead.TryRemove(limit.DeploymentId, out _);
                Interlocked.Increment(ref _overruled);
            }
            else
            {
                Interlocked.CompareExchange(ref _followUpAtTicks, (DateTime.UtcNow + FollowUpPull).Ticks, 0);
            }
        }
    }

    CancellationTokenSource Timeout(CancellationToken cancellationToken)
    {
        var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        timeout.CancelAfter(_options.PullTimeout);
        return timeout;
    }

    void RequestResync()
    {
        _resyncRequested = true;
        if (_wake.CurrentCount == 0)
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already woken.
            }
        }
    }

    /// <summary>Pulls everything every resync interval (sooner after a reconnect, with backoff after a failure); asks about overdue throttles every tick.</summary>
    async Task ResyncPeriodicallyAsync()
    {
        var stopping = _stopping.Token;
        var nextResync = DateTime.UtcNow + _options.ResyncInterval;
        var failures = 0;
        while (!stopping.IsCancellationRequested)
        {
            await _wake.WaitAsync(Tick, stopping);
            var followUp = Interlocked.Read(ref _followUpAtTicks);
            if (_resyncRequested || DateTime.UtcNow >= nextResync || (followUp > 0 && DateTime.UtcNow.Ticks >= followUp))
            {
                _resyncRequested = false;
                if (followUp > 0 && DateTime.UtcNow.Ticks >= followUp) Interlocked.CompareExchange(ref _followUpAtTicks, 0, followUp);
                if (await TryResyncAsync(stopping))
                {
                    failures = 0;
                    nextResync = DateTime.UtcNow + _options.ResyncInterval;
                }
                else
                {
                    nextResync = DateTime.UtcNow + MeteringPublisher.Backoff(failures++, _options.RetryDelay, _options.MaxRetryDelay);
                }
            }
            foreach (var deploymentId in _cache.ThrottledPastRetry()) _gapPulls.Writer.TryWrite(deploymentId);
        }
    }

    /// <summary>Pulls, in one query, every deployment whose pushes showed a gap since the last query.</summary>
    async Task PullGapsAsync()
    {
        var reader = _gapPulls.Reader;
        var pending = new HashSet<string>(StringComparer.Ordinal);
        while (await reader.WaitToReadAsync(_stopping.Token))
        {
            while (reader.TryRead(out var deploymentId)) pending.Add(deploymentId);
            try
            {
                await PullAsync(pending, _stopping.Token);
            }
            catch (Exception e) when (!_stopping.IsCancellationRequested)
            {
                _options.Failed?.Invoke(e); // the next resync fetches them
            }
            pending.Clear();
        }
    }

    async Task KeepLinkAsync()
    {
        var stopping = _stopping.Token;
        while (!stopping.IsCancellationRequested)
        {
            await _linkLost.Task.WaitAsync(stopping);
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    await Task.Delay(MeteringPublisher.Backoff(attempt, _options.RetryDelay, _options.MaxRetryDelay), stopping);
                    await ConnectAsync(stopping);
                    Interlocked.Increment(ref _reconnects);
                    Interlocked.Exchange(ref _followUpAtTicks, (DateTime.UtcNow + FollowUpPull).Ticks);
                    RequestResync(); // whatever was pushed while the link was down is gone with the old queue
                    break;
                }
                catch (Exception e) when (!stopping.IsCancellationRequested)
                {
                    _options.Failed?.Invoke(e);
                }
            }
        }
    }

    async Task ConnectAsync(CancellationToken cancellationToken)
    {
        await _linkGate.WaitAsync(cancellationToken);
        try
        {
            await DropLinkAsync(graceful: false);
            var lost = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var connection = await BrokerLink.ConnectAsync(_factory, _options.BrokerNodes, cancellationToken);
            try
            {
                await EnsureExchangeAsync(connection, cancellationToken);
                var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
                var queue = await channel.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true, cancellationToken: cancellationToken);
                await channel.QueueBindAsync(queue.QueueName, _options.Exchange, _options.BindingKey, cancellationToken: cancellationToken);
                if (_leases is not null)
                {
                    await BrokerLink.EnsureExchangeAsync(connection, AdmissionLeaseTopology.Exchange, AdmissionTopology.ExchangeType, cancellationToken);
                    await channel.QueueBindAsync(queue.QueueName, AdmissionLeaseTopology.Exchange, _options.BindingKey, cancellationToken: cancellationToken);
                }
                var consumer = new AsyncEventingBasicConsumer(channel);
                consumer.ReceivedAsync += (_, delivery) =>
                {
                    if (delivery.BasicProperties.UserId != _options.PlatformBrokerUser) Interlocked.Increment(ref _pushesUntrusted);
                    else if (delivery.Exchange == AdmissionLeaseTopology.Exchange) ReceiveLease(delivery.Body.Span);
                    else Receive(delivery.Body.Span);
                    return Task.CompletedTask;
                };
                connection.ConnectionShutdownAsync += (_, _) =>
                {
                    lost.TrySetResult();
                    return Task.CompletedTask;
                };
                channel.ChannelShutdownAsync += (_, _) =>
                {
                    lost.TrySetResult();
                    return Task.CompletedTask;
                };
                // Auto-ack: a lost push costs a pull, never a wrong limit, so there is nothing to redeliver.
                await channel.BasicConsumeAsync(queue.QueueName, autoAck: true, consumer, cancellationToken);
                _connection = connection;
                _linkLost = lost;
            }
            catch
            {
                await connection.AbortAsync(CancellationToken.None);
                await connection.DisposeAsync();
                throw;
            }
        }
        finally
        {
            _linkGate.Release();
        }
    }

    void Receive(ReadOnlySpan<byte> body)
    {
        AdmissionLimitChanged? limit;
        try
        {
            limit = JsonSerializer.Deserialize(body, AdmissionJson.Default.AdmissionLimitChanged);
            if (limit is null || string.IsNullOrEmpty(limit.DeploymentId)) throw new JsonException("An admission push without a deployment id.");
        }
        catch (JsonException e)
        {
            Interlocked.Increment(ref _pushesMalformed);
            _options.Failed?.Invoke(e);
            return;
        }
        if (_options.LosePush?.Invoke(limit) == true) return;
        switch (_cache.Apply(limit))
        {
            case LimitUpdate.Stale:
                Interlocked.Increment(ref _pushesIgnored);
                break;
            case LimitUpdate.AppliedAfterGap:
                Interlocked.Increment(ref _pushesApplied);
                Interlocked.Increment(ref _gapPullCount);
                _gapPulls.Writer.TryWrite(limit.DeploymentId);
                break;
            default:
                Interlocked.Increment(ref _pushesApplied);
                break;
        }
    }

    void ReceiveLease(ReadOnlySpan<byte> body)
    {
        AdmissionLease? lease;
        try
        {
            lease = JsonSerializer.Deserialize(body, AdmissionJson.Default.AdmissionLease);
        }
        catch (JsonException e)
        {
            Interlocked.Increment(ref _pushesMalformed);
            _options.Failed?.Invoke(e);
            return;
        }
        // Every node bound to the deployment hears every replica's lease; a process knows its own id from its renewals' answers.
        if (lease is null || lease.ReplicaId != _leases?.ReplicaId) return;
        Interlocked.Increment(ref _leasePushes);
        _cache.Apply(lease);
    }

    Task EnsureExchangeAsync(IConnection connection, CancellationToken cancellationToken) =>
        BrokerLink.EnsureExchangeAsync(connection, _options.Exchange, AdmissionTopology.ExchangeType, cancellationToken);

    Task DropLinkAsync(bool graceful)
    {
        var connection = _connection;
        _connection = null;
        return BrokerLink.DropAsync(connection, graceful);
    }
}
