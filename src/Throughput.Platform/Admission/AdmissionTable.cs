using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Marten;
using Npgsql;
using NpgsqlTypes;
using Throughput.Deployments;
using Throughput.EventLog;
using Throughput.Tenants;

namespace Throughput.Admission;

/// <summary>
/// Every host keeps the deployments and tenants in memory for the admission query API, so a query costs no database
/// round trip. Loaded once at start, it then follows the event log by sequence every <see cref="Tick"/>, folding the
/// deployment and tenant events committed since: a tick costs what changed (an index range on the log's primary key),
/// whatever the number of tenants, and never compares this host's clock with the database's.
/// </summary>
public sealed class AdmissionTable(IDocumentStore store, ILogger<AdmissionTable> log) : BackgroundService
{
    static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(200);

    readonly ConcurrentDictionary<string, Deployment> _deployments = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, Tenant> _tenants = new(StringComparer.Ordinal);
    readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly SemaphoreSlim _refreshing = new(1, 1);
    /// <summary>Every deployment and tenant event, by stored name: what a table of their states folds.</summary>
    readonly Dictionary<string, Type> _followed = new DeploymentsModule().Events.Concat(new TenantsModule().Events).ToDictionary(e => e.Value, e => e.Key);

    /// <summary>
    /// Where the table is in the log. A hole given up on is not read again: a later event of the same stream would still
    /// show the skipped one (its version would not follow on), and the stream is loaded then.
    /// </summary>
    readonly LogCursor _cursor = new();

    public IEnumerable<Deployment> Deployments => _deployments.Values;

    public Tenant? TenantOf(Deployment d) => _tenants.GetValueOrDefault(d.TenantId);

    public async ValueTask<Deployment?> FindAsync(string deploymentId, CancellationToken ct)
    {
        if (_deployments.TryGetValue(deploymentId, out var d)) return d;
        await _loaded.Task.WaitAsync(ct);
        if (_deployments.TryGetValue(deploymentId, out d)) return d;
        // Created since the last tick: read through once.
        await using var session = store.QuerySession();
        d = await DeploymentMeters.LoadDeploymentAsync(session, deploymentId, ct);
        if (d is null) return null;
        if (await session.LoadAsync<Tenant>(d.TenantId, ct) is { } t) Keep(t);
        return Keep(d);
    }

    /// <summary>
    /// Reads what changed since the last tick now: a node's full pull (at start or after a gap) must hold every deployment
    /// committed before it asked, or one created in the last tick stays unknown to it until its next periodic pull.
    /// </summary>
    public async Task CatchUpAsync(CancellationToken ct)
    {
        await _loaded.Task.WaitAsync(ct);
        await RefreshAsync(ct);
    }

    public override void Dispose()
    {
        base.Dispose();
        _refreshing.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Tick);
        do
        {
            try
            {
                await RefreshAsync(stoppingToken);
                _loaded.TrySetResult();
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "Refreshing the admission table failed; answering from the last state");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    async Task RefreshAsync(CancellationToken ct)
    {
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(ct);
        await RefreshAsync(connection, ct);
    }

    /// <summary>Brings the table up to date, reading the log over this connection (the one whose statistics a test reads).</summary>
    internal async Task RefreshAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        await _refreshing.WaitAsync(ct);
        try
        {
            await using var session = store.QuerySession();
            if (!_cursor.Started) await LoadAsync(session, connection, ct);
            await FollowAsync(session, connection, ct);
        }
        finally
        {
            _refreshing.Release();
        }
    }

    /// <summary>
    /// The position and its holes first, then the documents: an append in flight below the position is then a hole the
    /// cursor waits for, and whatever commits meanwhile is folded again, which versions make harmless.
    /// </summary>
    async Task LoadAsync(IQuerySession session, NpgsqlConnection connection, CancellationToken ct)
    {
        _cursor.Start(await LogCursor.LastSequenceAsync(connection, Schema, ct), LogCursor.StartOverlap);
        await FollowAsync(session, connection, ct);
        foreach (var t in await session.Query<Tenant>().ToListAsync(ct)) Keep(t);
        var meters = await DeploymentMeters.LoadAllAsync(session, ct);
        foreach (var d in await session.Query<Deployment>().ToListAsync(ct)) Keep(meters.TryGetValue(d.Id, out var m) ? m.On(d) : d);
    }

    /// <summary>One pass over the log above the cursor, page by page, with the tables' rows touched only to load a stream that skipped a version.</summary>
    async Task FollowAsync(IQuerySession session, NpgsqlConnection connection, CancellationToken ct)
    {
        var serializer = store.Options.Serializer();
        List<string> reload = [];
        List<(string DeploymentId, decimal BucketLevel, DateTimeOffset MeteredAt)> buckets = [];
        // Bodies only of the followed types, and only of rows not folded before: new ones, or ones filling a hole.
        await _cursor.FollowAsync(connection, Schema,
            $"""
            seq_id, stream_id, version, type,
            case when type = any(@types) and {LogCursor.IsNew} then case when type = @usage then data - @not_buckets else data end end,
            case when type = @usage and {LogCursor.IsNew} then bdata end
            """,
            parameters =>
            {
                parameters.Add(new NpgsqlParameter("types", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = _followed.Keys.ToArray() });
                parameters.AddWithValue("usage", UsageEvent);
                parameters.Add(new NpgsqlParameter("not_buckets", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = UsageBatchMeteredJson.AllButBuckets });
            },
            reader =>
            {
                if (reader.IsDBNull(4)) return;
                var stream = reader.GetString(1);
                var type = reader.GetString(3);
                if (type == UsageEvent && !reader.IsDBNull(5))
                {
                    // Stored as bytes (UsageBatchMeteredBytes) the event comes whole; only its first columns, the buckets, are read.
                    var length = (int)reader.GetBytes(5, 0, null, 0, 0);
                    var body = ArrayPool<byte>.Shared.Rent(length);
                    try
                    {
                        reader.GetBytes(5, 0, body, 0, length);
                        buckets.Clear();
                        reload.AddRange(UsageBatchMeteredJson.ReadBuckets(body.AsSpan(0, length), buckets)
                            ? FoldBuckets(buckets)
                            : FoldUsage(UsageBatchMeteredBytes.Instance.Deserialize(typeof(UsageBatchMetered), body[..length])));
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(body);
                    }
                    return;
                }
                if (type == UsageEvent)
                {
                    using var usage = reader.GetFieldValue<JsonDocument>(4);
                    buckets.Clear();
                    reload.AddRange(UsageBatchMeteredJson.ReadBuckets(usage.RootElement, buckets)
                        ? FoldBuckets(buckets)
                        : FoldUsage(serializer.FromJson<UsageBatchMetered>(new MemoryStream(Encoding.UTF8.GetBytes(usage.RootElement.GetRawText())))));
                    return;
                }
                var data = serializer.FromJson(_followed[type], reader, 4);
                if (DeploymentMeters.IsPartitionStream(stream)) reload.AddRange(FoldUsage(data));
                else if (!Fold(stream, reader.GetInt64(2), data)) reload.Add(stream);
            }, ct);

        foreach (var id in reload.Distinct())
        {
            if (id.StartsWith("dep-", StringComparison.Ordinal)) { if (await DeploymentMeters.LoadDeploymentAsync(session, id, ct) is { } d) Keep(d); }
            else if (await session.LoadAsync<Tenant>(id, ct) is { } t) Keep(t);
        }
    }

    /// <summary>Folds an event onto the state it follows; false when the state is missing a version before it (it must be loaded).</summary>
    bool Fold(string stream, long version, object data)
    {
        switch (data)
        {
            case DeploymentCreated created:
                if (!_deployments.ContainsKey(stream)) Keep(Deployment.Create(created) with { Version = version });
                return true;
            case TenantCreated created:
                if (!_tenants.ContainsKey(stream)) Keep(Tenant.Create(created) with { Version = version });
                return true;
        }
        if (_deployments.TryGetValue(stream, out var d))
        {
            if (version <= d.Version) return true;
            if (version > d.Version + 1) return false;
            // A deployment's stream held its usage before usage moved to partition streams: older logs still do.
            Keep(data switch { DeploymentEvent e => d.Then(e), UsageMetered u => d.Metered(u), _ => d } with { Version = version });
            return true;
        }
        if (_tenants.TryGetValue(stream, out var t))
        {
            if (version <= t.Version) return true;
            if (version > t.Version + 1) return false;
            Keep((data is TenantEvent e ? t.Then(e) : t) with { Version = version });
            return true;
        }
        return false;
    }

    /// <summary>Usage read whole (the earlier object form, or a single event): its buckets, as <see cref="FoldBuckets"/> sets them.</summary>
    List<string> FoldUsage(object data)
    {
        IReadOnlyList<UsageMetered> usage = data switch { UsageBatchMetered batch => batch.Usage, UsageMetered one => [one], _ => [] };
        return FoldBuckets([.. usage.Select(u => (u.DeploymentId, u.BucketLevel, u.MeteredAt))]);
    }

    /// <summary>
    /// Sets the buckets usage from a partition's stream carries; returns the deployments it names that this host does not
    /// hold (to be loaded). No version of the deployment's to follow, and a bucket is absolute, so folding an event again
    /// (the start's overlap) changes nothing. Only the bucket: admission reads nothing else of usage, and the API reads the
    /// totals from the meters, so the table reads only these columns of the event (<see cref="UsageBatchMeteredJson.AllButBuckets"/>).
    /// </summary>
    List<string> FoldBuckets(List<(string DeploymentId, decimal BucketLevel, DateTimeOffset MeteredAt)> buckets)
    {
        List<string> missing = [];
        foreach (var (id, level, at) in buckets)
        {
            // One copy per entry, and no closure: a usage event names thousands of deployments when there are many.
            Deployment? d;
            while (_deployments.TryGetValue(id, out d) && !_deployments.TryUpdate(id, d with { BucketLevel = level, BucketAt = d.BucketAt > at ? d.BucketAt : at }, d)) { }
            if (d is null) missing.Add(id);
        }
        return missing;
    }

    Deployment Keep(Deployment d) => _deployments.AddOrUpdate(d.Id, d, (_, old) => old.Version >= d.Version ? old : d);

    Tenant Keep(Tenant t) => _tenants.AddOrUpdate(t.Id, t, (_, old) => old.Version >= t.Version ? old : t);

    static readonly string UsageEvent = new DeploymentsModule().Events[typeof(UsageBatchMetered)];

    string Schema => store.Options.Events.DatabaseSchemaName;
}
