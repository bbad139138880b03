using System.Collections.Concurrent;
using System.Diagnostics;
using JasperFx.Events;
using Marten;
using Npgsql;
using NpgsqlTypes;
using Throughput.Deployments;
using Throughput.EventLog;

namespace Throughput.Metering;

/// <summary>
/// What each partition's consumer keeps of its deployments between batches, and when it writes their meters.
/// <para>
/// Snapshots are kept until their deployment's stream moves: a batch first reads what the event log gained since the
/// previous one (<see cref="LogCursor"/>: the rows above its position, a few per batch), forgets the snapshots of the
/// deployment streams among them, and loads only the snapshots it does not hold. Checking each deployment of a batch
/// against its stored version instead cost a read per deployment per batch: at 10,000 deployments over a quarter of
/// PostgreSQL's time while metering (2026-12-06, <c>pg_stat_statements</c>).
/// </para>
/// <para>
/// Meters are kept as folded, and written at a <b>checkpoint</b>: every meter changed since the last one, in a batch's
/// transaction, with the id of the partition stream's last usage event (<c>meter_checkpoints</c>). A partition that
/// keeps up checkpoints with every batch; a backlogged one (its batch waited its turn behind the previous one) at most
/// every <see cref="MeteringOptions.MeterCheckpointInterval"/>, so that under load a deployment's meter row is written
/// once per interval instead of once per batch; any batch touching a throttled deployment checkpoints (the throttle
/// lifter decides from those rows); a partition that falls idle (<see cref="MeteringOptions.MeterIdleWrite"/>) has its
/// last changes written by <see cref="MeterCheckpoints"/>. A
/// partition that starts, or that forgets because another writer moved a meter under it, reads its checkpoint and
/// folds the usage events its stream holds after it onto the stored rows: the usage log is the truth, the rows a
/// cache of it at the checkpoint.
/// </para>
/// </summary>
public sealed class PartitionDeployments(MeteringOptions options) : IDisposable
{
    readonly ConcurrentDictionary<string, Partition> _partitions = new(StringComparer.Ordinal);

    public Partition Of(string queue) => _partitions.GetOrAdd(queue, q => new Partition(DeploymentMeters.PartitionStream(q), options.MeterCheckpointInterval, options.BatchMessageLimit));

    public IEnumerable<Partition> All => _partitions.Values;

    public void Dispose()
    {
        foreach (var partition in _partitions.Values) partition.Dispose();
    }

    /// <summary>One partition's memory; its consumer holds it for a whole batch (<see cref="EnterAsync"/>), the checkpointer only when it is free.</summary>
    public sealed class Partition(string stream, TimeSpan interval, int messageLimit) : IDisposable
    {
        readonly SemaphoreSlim _gate = new(1, 1);
        readonly Dictionary<string, Deployment> _snapshots = new(StringComparer.Ordinal);
        readonly LogCursor _changes = new();
        readonly Dictionary<string, DeploymentMeter> _meters = new(StringComparer.Ordinal); // as folded; Version is its row's
        readonly HashSet<string> _unwritten = new(StringComparer.Ordinal); // meters ahead of their rows
        bool _caughtUp;
        Guid? _lastEvent; // the last usage event of the stream that the meters hold
        long _checkpointVersion; // the checkpoint row's version (0: none)
        long _writtenVersion; // what the checkpoint written in the open transaction will make it
        long _checkpointedAt; // Stopwatch timestamp; 0: not since this partition (re)started
        long _lastBatchAt; // Stopwatch timestamp of the last batch's commit

        public string Stream => stream;

        /// <summary>The partition's consumer batches, folded together while it is behind.</summary>
        public GroupCommit<MeteringConsumer.HandedBatch> Batches { get; } = new(messageLimit, handed => handed.Batch.Message.Length);

        public void Dispose() => _gate.Dispose();

        public async Task<IDisposable> EnterAsync(CancellationToken ct)
        {
            await _gate.WaitAsync(ct);
            return new Held(_gate);
        }

        sealed class Held(SemaphoreSlim gate) : IDisposable
        {
            public void Dispose() => gate.Release();
        }

        /// <summary>The current snapshots of these deployments (absent: no such deployment) and their meters.</summary>
        public async Task<(Dictionary<string, Deployment> Snapshots, Dictionary<string, DeploymentMeter> Meters)> ReadAsync(
            IDocumentSession session, IReadOnlyList<string> ids, CancellationToken ct)
        {
            if (!_caughtUp) await CatchUpAsync(session, ct);
            var snapshots = new Dictionary<string, Deployment>(ids.Count, StringComparer.Ordinal);
            var meters = new Dictionary<string, DeploymentMeter>(ids.Count, StringComparer.Ordinal);
            if (ids.Count == 0) return (snapshots, meters);
            await ForgetMovedAsync(session.Connection!, session.DocumentStore.Options.Events.DatabaseSchemaName, ct);
            List<string> missing = [];
            foreach (var id in ids)
            {
                if (_snapshots.TryGetValue(id, out var snapshot)) snapshots[id] = snapshot;
                else missing.Add(id);
            }
            if (missing.Count > 0)
                foreach (var snapshot in await session.LoadManyAsync<Deployment>(ct, missing)) snapshots[snapshot.Id] = snapshot;
            List<string> unknown = [];
            foreach (var id in snapshots.Keys)
            {
                if (_meters.TryGetValue(id, out var meter)) meters[id] = meter;
                else unknown.Add(id);
            }
            foreach (var (id, meter) in await DeploymentMeters.LoadAsync(session, unknown, ct)) meters[id] = meter;
            return (snapshots, meters);
        }

        /// <summary>
        /// Forgets the snapshot of every deployment whose stream gained an event since the last batch; all of them when the
        /// log passed a hole it waited for (an append that committed later than that would be missed otherwise).
        /// </summary>
        async Task ForgetMovedAsync(NpgsqlConnection connection, string schema, CancellationToken ct)
        {
            var gaveUp = await _changes.FollowAsync(connection, schema, $"seq_id, case when stream_id like 'dep-%' and {LogCursor.IsNew} then stream_id end", _ => { },
                reader => { if (!reader.IsDBNull(1)) _snapshots.Remove(reader.GetString(1)); }, ct);
            if (gaveUp) _snapshots.Clear();
        }

        /// <summary>
        /// Whether this batch writes the meters: always while the partition keeps up (the batch did not wait behind the
        /// previous one), when a throttled deployment is in it, on the partition's first batch, and otherwise once the
        /// interval has passed.
        /// </summary>
        public bool CheckpointDue(bool backlogged, bool throttling) =>
            !backlogged || throttling || _checkpointedAt == 0 || Stopwatch.GetElapsedTime(_checkpointedAt) >= interval;

        /// <summary>
        /// Writes, in the batch's transaction, the meters this batch moved (each over the row version it was read at) and
        /// every other meter still ahead of its row, and moves the checkpoint to <paramref name="lastEvent"/>.
        /// </summary>
        public async Task CheckpointAsync(NpgsqlConnection connection, string schema, IReadOnlyList<(DeploymentMeter Meter, long ReadAt)> moved, Guid? lastEvent,
            CancellationToken ct)
        {
            var movedIds = moved.Select(m => m.Meter.DeploymentId).ToHashSet(StringComparer.Ordinal);
            List<(DeploymentMeter, long)> writes = [.. moved, .. _unwritten.Where(id => !movedIds.Contains(id)).Select(id => (_meters[id], _meters[id].Version))];
            // One round trip for both: it sits between a throttle and the serving nodes hearing of it.
            await using var batch = new NpgsqlBatch(connection);
            if (writes.Count > 0) batch.BatchCommands.Add(DeploymentMeters.SaveCommand(schema, writes));
            batch.BatchCommands.Add(MoveCheckpointCommand(schema, lastEvent ?? _lastEvent));
            await using var reader = await batch.ExecuteReaderAsync(ct);
            if (writes.Count > 0)
            {
                await reader.ReadAsync(ct);
                DeploymentMeters.CheckSaved(reader.GetInt64(0), writes.Count);
                await reader.NextResultAsync(ct);
            }
            var next = await reader.ReadAsync(ct) ? reader.GetInt64(0) : (long?)null;
            if (next != _checkpointVersion + 1)
                throw new JasperFx.ConcurrencyException($"the checkpoint of {stream} moved since this host read it", typeof(DeploymentMeter), stream);
            _writtenVersion = next.Value;
        }

        /// <summary>After the commit: the snapshots read, the meters moved (written or not), the usage event appended.</summary>
        public void Committed(Dictionary<string, Deployment> snapshots, IReadOnlyList<(DeploymentMeter Meter, long ReadAt)> moved,
            IEnumerable<string> transitioned, bool checkpointed, Guid? appended)
        {
            foreach (var (id, snapshot) in snapshots) _snapshots[id] = snapshot;
            foreach (var id in transitioned) _snapshots.Remove(id); // its stream moved in this transaction: read it again
            if (checkpointed)
            {
                _checkpointVersion = _writtenVersion;
                foreach (var id in _unwritten) _meters[id] = _meters[id] with { Version = _meters[id].Version + 1 };
                _unwritten.Clear();
            }
            foreach (var (meter, readAt) in moved)
            {
                _meters[meter.DeploymentId] = meter with { Version = checkpointed ? readAt + 1 : readAt };
                if (!checkpointed) _unwritten.Add(meter.DeploymentId);
            }
            if (appended is not null) _lastEvent = appended;
            if (checkpointed) Checkpointed();
            _lastBatchAt = Stopwatch.GetTimestamp();
        }

        /// <summary>
        /// Writes the meters still ahead of their rows in a transaction of its own, when the partition's consumer is not in a
        /// batch and either has had none for <paramref name="idle"/> or the interval has passed: a partition whose traffic
        /// stopped has its last changes stored at once. A concurrency failure means another writer moved a meter: the
        /// partition forgets and reads again.
        /// </summary>
        public async Task FlushAsync(IDocumentStore store, TimeSpan idle, CancellationToken ct)
        {
            if (!await _gate.WaitAsync(0, ct)) return;
            try
            {
                if (!_caughtUp || _unwritten.Count == 0) return;
                if (Stopwatch.GetElapsedTime(_lastBatchAt) < idle && !CheckpointDue(backlogged: true, throttling: false)) return;
                // A connection of its own rather than a session: Marten's SaveChanges commits only a unit of work that holds something.
                await using var connection = store.Storage.Database.CreateConnection();
                await connection.OpenAsync(ct);
                await using var transaction = await connection.BeginTransactionAsync(ct);
                await CheckpointAsync(connection, store.Options.Events.DatabaseSchemaName, [], null, ct);
                await transaction.CommitAsync(ct);
                Committed([], [], [], checkpointed: true, appended: null);
            }
            catch (JasperFx.ConcurrencyException)
            {
                Forget();
            }
            finally
            {
                _gate.Release();
            }
        }

        /// <summary>Something this partition remembered was moved by another writer: read everything again, from the checkpoint on.</summary>
        public void Forget()
        {
            _snapshots.Clear();
            _meters.Clear();
            _unwritten.Clear();
            _caughtUp = false;
            _checkpointedAt = 0;
        }

        void Checkpointed() => _checkpointedAt = Math.Max(1, Stopwatch.GetTimestamp());

        /// <summary>
        /// Reads the checkpoint and folds the usage events the stream holds after it onto the stored meters (or, for a
        /// deployment with none yet, onto its snapshot's): those meters are ahead of their rows until the next checkpoint.
        /// No checkpoint yet: the rows are current (they were written with every batch before checkpoints existed).
        /// </summary>
        async Task CatchUpAsync(IDocumentSession session, CancellationToken ct)
        {
            _meters.Clear();
            _unwritten.Clear();
            var schema = session.DocumentStore.Options.Events.DatabaseSchemaName;
            // Before any snapshot is read: whatever commits after this is in the log above it.
            _snapshots.Clear();
            _changes.Start(await LogCursor.LastSequenceAsync(session.Connection!, schema, ct), LogCursor.StartOverlap);
            Guid? lastEvent = null;
            long version = 0, after = 0;
            await using (var command = new NpgsqlCommand(
                $"""
                select c.last_event, c.version, coalesce((select e.version from {schema}.mt_events e where e.id = c.last_event), 0)
                from {schema}.{DeploymentMeters.CheckpointTable} c where c.stream_id = @stream
                """, session.Connection))
            {
                command.Parameters.AddWithValue("stream", stream);
                await using var reader = await command.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    lastEvent = reader.IsDBNull(0) ? null : reader.GetGuid(0);
                    version = reader.GetInt64(1);
                    after = reader.GetInt64(2);
                }
            }
            _lastEvent = lastEvent;
            _checkpointVersion = version;
            if (version > 0)
            {
                var events = await session.Events.QueryAllRawEvents().Where(e => e.StreamKey == stream && e.Version > after).OrderBy(e => e.Version).ToListAsync(ct);
                var usage = events.SelectMany(e => e.Data switch { UsageBatchMetered b => b.Usage, UsageMetered u => [u], _ => [] }).ToList();
                if (events.Count > 0) _lastEvent = events[^1].Id;
                var ids = usage.Select(u => u.DeploymentId).Distinct(StringComparer.Ordinal).ToList();
                var meters = await DeploymentMeters.LoadAsync(session, ids, ct);
                var missing = ids.Where(id => !meters.ContainsKey(id)).ToList();
                foreach (var snapshot in missing.Count == 0 ? [] : await session.LoadManyAsync<Deployment>(ct, missing))
                    meters[snapshot.Id] = DeploymentMeter.Of(snapshot, 0);
                foreach (var u in usage)
                {
                    if (!meters.TryGetValue(u.DeploymentId, out var meter)) continue; // usage of a deployment that no longer exists
                    meters[u.DeploymentId] = meter.Then(u);
                    _unwritten.Add(u.DeploymentId);
                }
                foreach (var id in _unwritten) _meters[id] = meters[id];
            }
            _caughtUp = true;
        }

        NpgsqlBatchCommand MoveCheckpointCommand(string schema, Guid? lastEvent)
        {
            var command = new NpgsqlBatchCommand(
                $"""
                insert into {schema}.{DeploymentMeters.CheckpointTable} as c (stream_id, last_event, version) values (@stream, @last, 1)
                on conflict (stream_id) do update set last_event = excluded.last_event, version = c.version + 1 where c.version = @version
                returning version
                """);
            command.Parameters.AddWithValue("stream", stream);
            command.Parameters.Add(new NpgsqlParameter("last", NpgsqlDbType.Uuid) { Value = (object?)lastEvent ?? DBNull.Value });
            command.Parameters.AddWithValue("version", _checkpointVersion);
            return command;
        }
    }
}

/// <summary>Writes each idle partition's meters that are still ahead of their rows (see <see cref="PartitionDeployments"/>), and all of them when the host stops.</summary>
public sealed class MeterCheckpoints(PartitionDeployments partitions, IDocumentStore store, MeteringOptions options, ILogger<MeterCheckpoints> log) : BackgroundService
{
    static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(50);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Tick);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            foreach (var partition in partitions.All)
            {
                try
                {
                    await partition.FlushAsync(store, options.MeterIdleWrite, stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    log.LogWarning(e, "Writing the meters of {Stream} failed; retrying next tick", partition.Stream);
                }
            }
        }
    }
}
