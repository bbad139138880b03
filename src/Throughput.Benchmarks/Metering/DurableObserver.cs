using System.Globalization;
using System.Text;
using System.Text.Json;
using Npgsql;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Metering;

/// <summary>A usage event of the benchmark's deployments, as the observer first saw it committed in PostgreSQL.</summary>
/// <param name="AppendedAt">Marten's event timestamp: taken in the consumer when it appended, before its commit round trip.</param>
/// <param name="ObservedAt">When a query first returned the event: its commit happened before this.</param>
/// <param name="Late">Found only by the final sweep, not while polling: its <see cref="ObservedAt"/> is the sweep's.</param>
/// <param name="Entries">Per deployment in the event, its records and their earliest startedAt; one entry for the whole event when the poll read only sums.</param>
public readonly record struct DurableBatch(long SeqId, DateTimeOffset AppendedAt, DateTimeOffset ObservedAt, bool Late, UsageEntry[] Entries)
{
    public long Records { get; } = Entries.Sum(e => e.Records);

    /// <summary>The earliest record's startedAt, which the benchmark sets to the moment it handed the record to the SDK.</summary>
    public DateTimeOffset FirstStartedAt { get; } = Entries.Length == 0 ? ObservedAt : Entries.Min(e => e.FirstStartedAt);
}

/// <summary>One deployment's part of a usage event: its records, and the earliest moment one of them was handed to the SDK.</summary>
public readonly record struct UsageEntry(DateTimeOffset FirstStartedAt, long Records);

/// <summary>
/// Watches throughput.mt_events for the usage events of the deployments by polling: the running count of durable
/// records drives the load's in-flight limit, and each event's first sighting bounds its commit time from above.
/// Events commit out of seq_id order, so each poll looks back over the ids of the last <see cref="Lookback"/> and skips
/// those already seen.
/// </summary>
public sealed class DurableObserver : IAsyncDisposable
{
    // Far longer than an append's transaction stays open, and short: every poll rescans the lookback's rows, and at 300
    // events/s a 10 s lookback cost PostgreSQL a third of a core that the platform under test then lacked.
    static readonly TimeSpan Lookback = TimeSpan.FromSeconds(3);

    readonly string _newEventsSql;
    readonly bool _columns; // the poll returns each event's records and start times as JSON arrays
    readonly string _schema;

    readonly NpgsqlDataSource _database;
    readonly string[] _streams;
    readonly string[] _usageStreams;
    readonly TimeSpan _interval;
    readonly List<DurableBatch> _batches = [];
    readonly HashSet<long> _seen = [];
    readonly HashSet<long> _recent = []; // seen and above the floor: the poll query skips these itself
    readonly Queue<(DateTimeOffset At, long MaxSeq)> _marks = new();
    readonly CancellationTokenSource _stop = new();
    long _startFloor;
    long _countedBefore; // an earlier run on the same deployments (the scale benchmark meters each size twice)
    long _floor;
    long _maxSeq;
    long _records;
    Task? _polling;

    /// <param name="usageStreams">
    /// When the run has partition queues of its own: their usage streams, which hold only its deployments' usage. A poll
    /// then reads those streams' new events by index instead of matching every new event's deployment id, which cost
    /// PostgreSQL a tenth of a core at 1,000 deployments that the platform under test then lacked.
    /// </param>
    public DurableObserver(string connectionString, IReadOnlyList<string> deployments, TimeSpan interval, string schema = "throughput", IReadOnlyList<string>? usageStreams = null)
    {
        _schema = schema;
        // With usage streams of its own, each new event's records and start times come back as the event's own columns and
        // are summed here: summing a few thousand elements per event inside PostgreSQL (each a text value cast to a number
        // or a timestamp) cost it about a tenth of its time at 10,000 deployments (pg_stat_statements, 2026-12-06), a cost
        // of measuring that the 16-deployment baseline, with a few elements per event, hardly paid.
        _newEventsSql = usageStreams is null
            ? $"""
              select seq_id, sum((data->>'records')::bigint)::bigint, min((data->>'firstStartedAt')::timestamptz), min("timestamp")
              from {UsageRows.Of(schema)}
              where seq_id > @floor and data->>'deploymentId' in (select unnest(@streams)) and not (seq_id = any(@seen))
              group by seq_id
              """
            : $"""
              select e.seq_id,
                  case when e.bdata is null then coalesce(e.data->>'records', (select jsonb_agg(o->'records') from jsonb_array_elements(e.data->'usage') o)::text) end,
                  case when e.bdata is null then coalesce(e.data->>'firstStartedAt', (select jsonb_agg(o->'firstStartedAt') from jsonb_array_elements(e.data->'usage') o)::text) end,
                  e."timestamp", e.bdata
              from {schema}.mt_events e
              where e.seq_id > @floor and e.stream_id = any(@usage) and e.type = 'usage_batch_metered' and not (e.seq_id = any(@seen))
              """;
        _columns = usageStreams is not null;
        _usageStreams = usageStreams is null ? [] : [.. usageStreams];
        _database = NpgsqlDataSource.Create(connectionString);
        _streams = [.. deployments];
        _interval = interval;
    }

    public TimeSpan Interval => _interval;

    /// <summary>Records in the usage events seen so far.</summary>
    public long Records => Interlocked.Read(ref _records);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using (var command = _database.CreateCommand($"select coalesce(max(seq_id), 0) from {_schema}.mt_events"))
            _startFloor = _floor = _maxSeq = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        _countedBefore = await MeteredAsync(cancellationToken);
        _polling = Task.Run(PollLoopAsync, CancellationToken.None);
    }

    /// <summary>Stops polling, then reads every usage event of the run once more and adds any the polls missed.</summary>
    public async Task<IReadOnlyList<DurableBatch>> StopAsync(CancellationToken cancellationToken)
    {
        await _stop.CancelAsync();
        if (_polling is not null) await _polling;
        _floor = _startFloor;
        await PollAsync(late: true, cancellationToken);
        lock (_batches) return [.. _batches];
    }

    /// <summary>
    /// The records the deployments' meters gained since this observer started: the platform's own count, which the API's usage totals read. A backlogged
    /// partition writes its meters about once a second, so this waits up to 10 s for them to reach <paramref name="expected"/>.
    /// </summary>
    public async Task<long> CountedRecordsAsync(long expected, CancellationToken cancellationToken)
    {
        var until = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var counted = await MeteredAsync(cancellationToken) - _countedBefore;
            if (counted == expected || DateTimeOffset.UtcNow > until) return counted;
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>Every record the deployments' meters hold, this run's and any earlier run's on them.</summary>
    async Task<long> MeteredAsync(CancellationToken cancellationToken)
    {
        await using var command = _database.CreateCommand($"select coalesce(sum(records), 0)::bigint from {_schema}.deployment_meters where deployment_id = any(@streams)");
        command.Parameters.AddWithValue("streams", _streams);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>Records of the given producers that the platform quarantined instead of counting.</summary>
    public async Task<long> QuarantinedAsync(IReadOnlyList<string> producers, CancellationToken cancellationToken)
    {
        await using var command = _database.CreateCommand($"select count(*) from {_schema}.mt_doc_quarantinedmetering where data->>'producerId' = any(@producers)");
        command.Parameters.AddWithValue("producers", producers.ToArray());
        try
        {
            return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            return 0; // nothing was ever quarantined in this database
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested) await _stop.CancelAsync();
        if (_polling is not null) await _polling.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
        await _database.DisposeAsync();
    }

    async Task PollLoopAsync()
    {
        using var timer = new PeriodicTimer(_interval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
                await PollAsync(late: false, _stop.Token);
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    async Task PollAsync(bool late, CancellationToken cancellationToken)
    {
        await using var command = _database.CreateCommand(_newEventsSql);
        command.Parameters.AddWithValue("floor", _floor);
        command.Parameters.AddWithValue("streams", _streams);
        command.Parameters.AddWithValue("usage", _usageStreams);
        command.Parameters.AddWithValue("seen", late ? [] : _recent.ToArray());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var observedAt = DateTimeOffset.UtcNow; // the query's snapshot, and so every commit it shows, precedes this
        long added = 0;
        while (await reader.ReadAsync(cancellationToken))
        {
            UsageEntry[] entries = !_columns ? [new(reader.GetFieldValue<DateTimeOffset>(2), reader.GetInt64(1))]
                : reader.IsDBNull(4) ? EntriesOf(reader.GetString(1), reader.GetString(2))
                : EntriesOf(reader.GetFieldValue<byte[]>(4));
            var batch = new DurableBatch(reader.GetInt64(0), reader.GetFieldValue<DateTimeOffset>(3), observedAt, late, entries);
            if (!_seen.Add(batch.SeqId)) continue;
            _recent.Add(batch.SeqId);
            _maxSeq = Math.Max(_maxSeq, batch.SeqId);
            added += batch.Records;
            lock (_batches) _batches.Add(batch);
        }
        Interlocked.Add(ref _records, added);
        AdvanceFloor(observedAt);
    }

    /// <summary>The event's records and firstStartedAt columns (JSON arrays, one element per deployment; or one scalar each), side by side.</summary>
    public static UsageEntry[] EntriesOf(string records, string times)
    {
        if (!records.StartsWith('[')) return [new(DateTimeOffset.Parse(times, CultureInfo.InvariantCulture), long.Parse(records, CultureInfo.InvariantCulture))];
        var counts = new Utf8JsonReader(Encoding.UTF8.GetBytes(records));
        var starts = new Utf8JsonReader(Encoding.UTF8.GetBytes(times));
        List<UsageEntry> entries = [];
        while (Next(ref counts, JsonTokenType.Number) && Next(ref starts, JsonTokenType.String))
            entries.Add(new(starts.GetDateTimeOffset(), counts.GetInt64()));
        return [.. entries];

        static bool Next(ref Utf8JsonReader reader, JsonTokenType type)
        {
            while (reader.Read())
                if (reader.TokenType == type) return true;
            return false;
        }
    }

    /// <summary>
    /// The records and firstStartedAt columns of a usage event stored as bytes (the platform's <c>UsageBatchMeteredBytes</c>:
    /// its columnar JSON), side by side; read here, not in PostgreSQL, which would have to parse the whole event first.
    /// </summary>
    public static UsageEntry[] EntriesOf(ReadOnlySpan<byte> body)
    {
        List<long> counts = [];
        List<DateTimeOffset> starts = [];
        var reader = new Utf8JsonReader(body);
        reader.Read();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var column = reader.ValueTextEquals("records"u8) ? counts : null;
            var times = reader.ValueTextEquals("firstStartedAt"u8) ? starts : null;
            reader.Read();
            if (column is null && times is null)
            {
                reader.Skip();
                continue;
            }
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                if (column is not null) column.Add(reader.GetInt64());
                else times!.Add(reader.GetDateTimeOffset());
        }
        if (counts.Count != starts.Count) throw new InvalidDataException($"A usage event has {counts.Count} record counts and {starts.Count} start times.");
        var entries = new UsageEntry[counts.Count];
        for (var i = 0; i < entries.Length; i++) entries[i] = new(starts[i], counts[i]);
        return entries;
    }

    /// <summary>Ids below the highest one seen a lookback ago are settled: no transaction stays open that long here.</summary>
    void AdvanceFloor(DateTimeOffset now)
    {
        _marks.Enqueue((now, _maxSeq));
        while (_marks.TryPeek(out var mark) && mark.At <= now - Lookback)
        {
            _floor = Math.Max(_floor, mark.MaxSeq);
            _marks.Dequeue();
        }
        _recent.RemoveWhere(s => s <= _floor);
    }
}
