using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;

namespace Throughput.EventLog;

/// <summary>
/// A reader's position in the event log (<c>mt_events</c>) by sequence, for readers that follow what was committed since
/// they last looked instead of scanning tables: a pass costs what was appended since, whatever the size of the store.
/// <para>
/// Sequence numbers are taken at insert and become visible at commit, so a number missing below visible ones is an append
/// still in flight, or one rolled back. The cursor stops below such a hole and every pass reads it again, for
/// <see cref="HoleWait"/>; after that it is taken for a rollback and passed (<see cref="FollowAsync"/> says so), so a
/// reader that must not miss an event late beyond that reads its state again instead.
/// </para>
/// </summary>
public sealed class LogCursor
{
    static readonly TimeSpan HoleWait = TimeSpan.FromSeconds(5);

    const int MaxHoles = 64;
    const int Page = 5_000;

    /// <summary>How far below the last sequence a reader starting now looks for appends that may still be in flight.</summary>
    public const long StartOverlap = 1_000;

    /// <summary>Holes above the cursor (first missing sequence, last missing sequence) and when this reader first saw each.</summary>
    SortedDictionary<long, (long Last, long Since)> _holes = [];

    /// <summary>Every event at or below it was read, or was in a hole given up on; -1 before <see cref="Start"/>.</summary>
    long After { get; set; } = -1;

    /// <summary>The highest sequence read: rows up to it are read again (while a hole is open) but are not new.</summary>
    long Seen { get; set; }

    public bool Started => After >= 0;

    /// <summary>
    /// Starts at the log's last sequence, read before the reader loads the state it then follows. Appends that may still
    /// have been in flight then are looked for <paramref name="overlap"/> sequences below it: the first pass notes the
    /// holes there, and their events are new when they commit.
    /// </summary>
    public void Start(long last, long overlap)
    {
        Seen = last;
        After = Math.Max(0, last - overlap);
        _holes = [];
    }

    /// <summary>The log's last sequence, for <see cref="Start"/>.</summary>
    public static async Task<long> LastSequenceAsync(NpgsqlConnection connection, string schema, CancellationToken ct)
    {
        await using var last = new NpgsqlCommand($"select coalesce(max(seq_id), 0) from {schema}.mt_events", connection);
        return (long)(await last.ExecuteScalarAsync(ct))!;
    }

    /// <summary>
    /// The SQL condition, over a row of <c>mt_events</c>, that the row is new to this reader: above <see cref="Seen"/> or
    /// filling a hole.
    /// </summary>
    public const string IsNew = "(seq_id > @seen or exists (select 1 from unnest(@hole_firsts, @hole_lasts) h(f, l) where seq_id between h.f and h.l))";

    /// <summary>
    /// One pass over the rows above the cursor, in sequence order, page after page: <paramref name="columns"/> is the select
    /// list over <c>mt_events</c> (its first column <c>seq_id</c>; it may use <see cref="IsNew"/> and the parameters
    /// <paramref name="parameters"/> adds), each row goes to <paramref name="row"/>, and the cursor then moves past what
    /// was read, up to its first hole still waited for. True when a hole was given up on in this pass.
    /// </summary>
    public async Task<bool> FollowAsync(NpgsqlConnection connection, string schema, string columns, Action<NpgsqlParameterCollection> parameters,
        Action<NpgsqlDataReader> row, CancellationToken ct)
    {
        var pass = new Pass(this);
        int rows;
        do
        {
            rows = 0;
            await using var command = new NpgsqlCommand($"select {columns} from {schema}.mt_events where seq_id > @after order by seq_id limit {Page}", connection);
            command.Parameters.AddWithValue("after", pass.ReadAfter);
            command.Parameters.AddWithValue("seen", Seen);
            command.Parameters.Add(new NpgsqlParameter("hole_firsts", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { Value = _holes.Keys.ToArray() });
            command.Parameters.Add(new NpgsqlParameter("hole_lasts", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { Value = _holes.Values.Select(h => h.Last).ToArray() });
            parameters(command.Parameters);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                rows++;
                pass.Read(reader.GetInt64(0));
                row(reader);
            }
        }
        while (rows == Page);
        pass.End();
        return pass.GaveUp;
    }

    sealed class Pass(LogCursor cursor)
    {
        readonly SortedDictionary<long, (long Last, long Since)> _holes = [];
        long _expected = cursor.After + 1, _cursor = cursor.After;
        bool _blocked;

        /// <summary>The last sequence this pass read: the next page starts above it.</summary>
        public long ReadAfter { get; private set; } = cursor.After;

        /// <summary>Whether a hole was passed in this pass without its event ever being read.</summary>
        public bool GaveUp { get; private set; }

        /// <summary>Notes the next row's sequence (rows in ascending order).</summary>
        public void Read(long sequence)
        {
            if (sequence > _expected) _blocked |= Hole(_expected, sequence - 1);
            _expected = sequence + 1;
            if (!_blocked) _cursor = sequence;
            ReadAfter = sequence;
        }

        /// <summary>Moves the cursor past what this pass read, up to its first hole still waited for.</summary>
        public void End()
        {
            cursor.Seen = Math.Max(cursor.Seen, ReadAfter);
            cursor.After = _cursor;
            cursor._holes = _holes;
        }

        /// <summary>Notes a hole, keeping when it was first seen; true while the cursor must wait for it, false once it is given up.</summary>
        bool Hole(long first, long last)
        {
            var since = cursor._holes.TryGetValue(first, out var seen) ? seen.Since : Stopwatch.GetTimestamp();
            if (Stopwatch.GetElapsedTime(since) >= HoleWait || _holes.Count >= MaxHoles)
            {
                GaveUp = true;
                return false;
            }
            _holes[first] = (last, since);
            return true;
        }
    }
}
