using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>The rows the projection daemon wrote over a span, from PostgreSQL's own table counters, and how wide they are.</summary>
public sealed record ProjectionRows(long Rows, double BytesPerRow);

/// <summary>What writing one second of the daemon's rows costs bare: the upsert's time, p50 / p99 over the repeats.</summary>
public sealed record ProjectionRowsCeilingRun(int Rows, int BytesPerRow, IReadOnlyList<double> SortedMs);

/// <summary>
/// The projection lag's ceiling, estimated: the daemon's lag has at least the cost of writing the rows it writes behind it.
/// Which rows those are comes from pg_stat_user_tables (inserts, updates and deletes in the schema's tables outside the
/// metering transaction's own: events, streams, claims, meters, quarantine); their cost is measured by upserting as many
/// rows of the same average width, one second's worth in one statement and one transaction, into a scratch table.
/// </summary>
public static class ProjectionRowsCeiling
{
    static readonly string[] MeteringTables = ["mt_events", "mt_streams", "metering_applied", "deployment_meters"];

    /// <summary>Rows written so far per table of <paramref name="schema"/> that the daemon writes (counters since the server started).</summary>
    public static async Task<Dictionary<string, long>> CountersAsync(string schema, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand(
            "select relname, n_tup_ins + n_tup_upd + n_tup_del from pg_stat_user_tables where schemaname = @schema and not (relname = any(@metering)) and relname not like '%quarantine%'");
        command.Parameters.AddWithValue("schema", schema);
        command.Parameters.AddWithValue("metering", MeteringTables);
        var counters = new Dictionary<string, long>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) counters[reader.GetString(0)] = reader.GetInt64(1);
        return counters;
    }

    /// <summary>The daemon's rows between two readings of the counters, with their average width sampled from the tables written.</summary>
    public static async Task<ProjectionRows> BetweenAsync(string schema, Dictionary<string, long> before, Dictionary<string, long> after, CancellationToken ct)
    {
        var written = after.Select(t => (Table: t.Key, Rows: t.Value - before.GetValueOrDefault(t.Key))).Where(t => t.Rows > 0).ToList();
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        double bytes = 0;
        foreach (var (table, rows) in written)
        {
            await using var width = database.CreateCommand($"select coalesce(avg(pg_column_size(t.*)), 0)::float8 from (select * from {schema}.\"{table}\" limit 200) t");
            bytes += rows * (double)(await width.ExecuteScalarAsync(ct) ?? 0.0);
        }
        var total = written.Sum(t => t.Rows);
        return new ProjectionRows(total, total == 0 ? 0 : bytes / total);
    }

    /// <summary>Upserts <paramref name="rows"/> rows of <paramref name="bytesPerRow"/> bytes of JSON, <paramref name="repeats"/> times, over the same keys (updates, as the daemon's are).</summary>
    public static async Task<ProjectionRowsCeilingRun> MeasureAsync(int rows, int bytesPerRow, int repeats, CancellationToken ct)
    {
        var schema = $"bench_ceiling_rows_{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4))}";
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        try
        {
            await using (var create = database.CreateCommand($"create schema {schema}; create table {schema}.projected (id text primary key, data jsonb not null, version bigint not null)"))
                await create.ExecuteNonQueryAsync(ct);
            var ids = Enumerable.Range(0, Math.Max(1, rows)).Select(i => $"document-{i}").ToArray();
            var data = Enumerable.Repeat(System.Text.Encoding.UTF8.GetString(Admission.BareAdmission.Body(Math.Max(16, bytesPerRow))), ids.Length).ToArray();
            var times = new List<double>(repeats);
            for (var i = 0; i <= repeats; i++)
            {
                var started = Stopwatch.GetTimestamp();
                await using var connection = await database.OpenConnectionAsync(ct);
                await using var transaction = await connection.BeginTransactionAsync(ct);
                await using (var upsert = new NpgsqlCommand(
                    $"insert into {schema}.projected (id, data, version) select id, data::jsonb, @version from unnest(@ids, @data) as u(id, data) " +
                    "on conflict (id) do update set data = excluded.data, version = excluded.version", connection, transaction))
                {
                    upsert.Parameters.Add(new NpgsqlParameter("ids", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = ids });
                    upsert.Parameters.Add(new NpgsqlParameter("data", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = data });
                    upsert.Parameters.AddWithValue("version", (long)i);
                    await upsert.ExecuteNonQueryAsync(ct);
                }
                await transaction.CommitAsync(ct);
                if (i > 0) times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds); // the first inserts; the rest update, as the daemon does
            }
            times.Sort();
            return new ProjectionRowsCeilingRun(ids.Length, bytesPerRow, times);
        }
        finally
        {
            await Services.DropSchemaAsync(schema);
        }
    }
}
