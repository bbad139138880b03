using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Npgsql;
using Throughput.Configuration;

namespace Throughput.Store;

/// <summary>
/// Runs Marten's async daemon (the read models and the admission forwarder) on one host of the schema at a time: the host
/// holding a session advisory lock on a connection of its own, outside any transaction.
/// </summary>
/// <remarks>
/// Marten's own leader election (HotCold) holds its lock in a transaction left open for as long as the host leads, and an
/// idle transaction of Npgsql's keeps a snapshot: PostgreSQL then could not remove a single dead row version written since
/// the leader started, in any table of the database. Meters, minutes and hours, rewritten many times a second, grew chains
/// of dead versions that every read and update walked, and metering at 1,000 deployments fell from 35,000 to 6,000 records/s
/// within a minute. This lock's connection is idle between its statements, so it holds nothing back.
/// </remarks>
public sealed class DaemonLeadership(IDocumentStore store, ServiceSettings settings, ILogger<DaemonLeadership> log) : BackgroundService
{
    /// <summary>How often a follower tries for the lock, and the leader checks that its lock's connection is alive.</summary>
    static readonly TimeSpan Check = TimeSpan.FromSeconds(2);

    /// <summary>Whoever holds it decides whether the daemon runs: the leadership loop, or a pause (a rebuild in the host).</summary>
    readonly SemaphoreSlim _gate = new(1, 1);
    IProjectionDaemon? _daemon;

    volatile bool _leading;

    /// <summary>Whether this host holds the lock now.</summary>
    public bool Leading => _leading;

    /// <summary>Stops the daemon, if it runs here, and keeps it stopped until the returned handle is disposed.</summary>
    public async Task<IAsyncDisposable> PauseAsync()
    {
        await _gate.WaitAsync();
        await StopDaemonAsync();
        return new Paused(_gate);
    }

    sealed class Paused(SemaphoreSlim gate) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            gate.Release();
            return ValueTask.CompletedTask;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await LeadWhileLockedAsync(stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                log.LogWarning(e, "Daemon leadership lost, or the database not reachable; trying again in {Check}", Check);
            }
            catch (OperationCanceledException)
            {
                // The host is stopping.
            }
            try { await Task.Delay(Check, stoppingToken); }
            catch (OperationCanceledException) { }
        }
    }

    async Task LeadWhileLockedAsync(CancellationToken ct)
    {
        // Not pooled: the lock lives and dies with this connection, and closing it is what releases the lock.
        await using var connection = new NpgsqlConnection(settings.PostgresConnectionString() + ";Pooling=false;Application Name=throughput-daemon-leader");
        await connection.OpenAsync(ct);
        var schema = store.Options.Events.DatabaseSchemaName;
        while (!await TryLockAsync(connection, schema, ct))
            await Task.Delay(Check, ct);
        _leading = true;
        log.LogInformation("This host leads the async daemon of schema {Schema}", schema);
        try
        {
            while (true)
            {
                if (await _gate.WaitAsync(0, ct))
                {
                    try
                    {
                        if (_daemon is null)
                        {
                            await PositionNewShardsAsync(connection, store, ct);
                            _daemon = await store.BuildProjectionDaemonAsync();
                            await _daemon.StartAllAsync();
                        }
                    }
                    finally { _gate.Release(); }
                }
                await Task.Delay(Check, ct);
                await ScalarAsync<int>(connection, "select 1", ct); // a lost connection has lost the lock with it
            }
        }
        finally
        {
            // Stopped before the connection closes: the lock is released only once this daemon no longer writes.
            _leading = false;
            await _gate.WaitAsync(CancellationToken.None);
            try { await StopDaemonAsync(); }
            finally { _gate.Release(); }
        }
    }

    async Task StopDaemonAsync()
    {
        if (_daemon is not { } daemon) return;
        _daemon = null;
        await daemon.StopAllAsync();
        daemon.Dispose();
        log.LogInformation("Async daemon of schema {Schema} stopped on this host", store.Options.Events.DatabaseSchemaName);
    }

    /// <summary>
    /// Takes the schema's daemon lock on this connection if no other holds it; held until the connection closes. The
    /// rebuild command takes it too, so no host leads the daemon while it runs.
    /// </summary>
    public static Task<bool> TryLockAsync(NpgsqlConnection connection, string schema, CancellationToken ct) =>
        ScalarAsync<bool>(connection, $"select pg_try_advisory_lock({EventStore.DaemonLockId(schema)})", ct);

    /// <summary>
    /// Gives every composite projection, and each member of one, that has no progress row the position it has reached. Marten
    /// writes a member's row first on its composite's first page, and later pages only move it; a member that joined a
    /// composite already under way (as the usage watch did, without a new version, so as not to rebuild every read model)
    /// would otherwise never get one, and every page's progress update for it would find no row: a warning per page
    /// today, a failed page once Marten makes that an error (JasperFx/marten#5502). The member has folded every page the
    /// composite has, so the composite's position is its own. A composite without a row whose members have them (the usage
    /// series, formed on 2026-12-07 from members of the read models' composite) has folded what the least of those has.
    /// </summary>
    public static async Task PositionNewShardsAsync(NpgsqlConnection connection, IDocumentStore store, CancellationToken ct)
    {
        var schema = store.Options.Events.DatabaseSchemaName;
        foreach (var composite in ((DocumentStore)store).Options.Projections.All.OfType<CompositeProjection>())
        {
            await using var command = new NpgsqlCommand(
                $"""
                insert into {schema}.mt_event_progression (name, last_seq_id)
                select @composite, min(last_seq_id) from {schema}.mt_event_progression where name = any(@members)
                having count(*) > 0
                on conflict (name) do nothing;
                insert into {schema}.mt_event_progression (name, last_seq_id)
                select m.name, c.last_seq_id from {schema}.mt_event_progression c cross join unnest(@members) m(name)
                where c.name = @composite
                on conflict (name) do nothing
                """, connection) { CommandTimeout = 10 };
            command.Parameters.AddWithValue("composite", ShardIdentity(composite));
            command.Parameters.AddWithValue("members", composite.AllProjections().OfType<ProjectionBase>().Select(ShardIdentity).ToArray());
            await command.ExecuteNonQueryAsync(ct);
        }
    }

    static string ShardIdentity(ProjectionBase projection) => new ShardName(projection.Name, ShardName.All, projection.Version).Identity;

    static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 10 };
        return (T)(await command.ExecuteScalarAsync(ct))!;
    }
}
