using System.Text.Json;
using Npgsql;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;

namespace Throughput.Benchmarks.Drills.ScaleOut;

/// <summary>What the platform counted of the run, read from each place a count lives: the event log, the dedupe ledger, each API instance's usage totals and invoice drafts.</summary>
public static class Counted
{
    /// <summary>The usage events' records and tokens, and how many deployments' usage they held (one per deployment per event).</summary>
    public static async Task<(TokenTally Tally, long Events)> InEventsAsync(string schema, IReadOnlyList<string> deployments, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand($"""
            select count(*), {Sum("records")}, {Sum("promptTokens")}, {Sum("cachedTokens")}, {Sum("outputTokens")},
                   {Sum("spilledRecords")}, {Sum("spilledPromptTokens")}, {Sum("spilledCachedTokens")}, {Sum("spilledOutputTokens")}
            from {UsageRows.Of(schema)} where data->>'deploymentId' in (select unnest(@streams))
            """);
        command.Parameters.AddWithValue("streams", deployments.ToArray());
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var tally = new TokenTally(reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5), reader.GetInt64(6), reader.GetInt64(7), reader.GetInt64(8));
        return (tally, reader.GetInt64(0));

        static string Sum(string field) => $"coalesce(sum((data->>'{field}')::bigint), 0)::bigint";
    }

    /// <summary>Usage events appended after <paramref name="afterSeq"/>, per deployment: shows every partition being consumed again after a kill.</summary>
    public static async Task<int> DeploymentsMeteredAfterAsync(string schema, IReadOnlyList<string> deployments, long afterSeq, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand($"select count(distinct data->>'deploymentId')::int from {UsageRows.Of(schema)} where data->>'deploymentId' in (select unnest(@streams)) and seq_id > @after");
        command.Parameters.AddWithValue("streams", deployments.ToArray());
        command.Parameters.AddWithValue("after", afterSeq);
        return (int)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>
    /// The longest time between two consecutive usage events of any one deployment, for events appended in (<paramref name="from"/>,
    /// <paramref name="to"/>]: how long a partition stood still, e.g. while its consumer moved to another host or node.
    /// </summary>
    public static async Task<TimeSpan> LongestPauseAsync(string schema, IReadOnlyList<string> deployments, DateTimeOffset from, DateTimeOffset to, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand($"""
            select coalesce(max(extract(epoch from gap)), 0)::float8 from (
              select "timestamp" as at, "timestamp" - lag("timestamp") over (partition by data->>'deploymentId' order by seq_id) as gap
              from {UsageRows.Of(schema)}
              where data->>'deploymentId' in (select unnest(@streams)) and "timestamp" > @from - interval '1 minute' and "timestamp" <= @to
            ) g where at > @from
            """);
        command.Parameters.AddWithValue("streams", deployments.ToArray());
        command.Parameters.AddWithValue("from", from);
        command.Parameters.AddWithValue("to", to);
        return TimeSpan.FromSeconds((double)(await command.ExecuteScalarAsync(ct))!);
    }

    public static async Task<long> LastSequenceAsync(string schema, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand($"select coalesce(max(seq_id), 0) from {schema}.mt_events");
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>Dedupe claims of the producers: one per (producer, sequence, deployment) counted, so one per batch the SDK had confirmed.</summary>
    public static async Task<long> ClaimsAsync(string schema, IReadOnlyList<string> producers, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand($"select count(*) from {schema}.metering_applied where producer_id = any(@producers)");
        command.Parameters.AddWithValue("producers", producers.ToArray());
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>The deployments' usage totals as one API instance answers them (the deployments' meters).</summary>
    public static async Task<TokenTally> InUsageTotalsAsync(PlatformApi tenant, IReadOnlyList<string> deployments, CancellationToken ct)
    {
        var tally = default(TokenTally);
        foreach (var deployment in deployments)
        {
            var t = await tenant.GetAsync($"/v1/deployments/{deployment}/usage/totals", ct);
            tally = tally.Add(new TokenTally(Long(t, "records"), Long(t, "promptTokens"), Long(t, "cachedTokens"), Long(t, "outputTokens"), 0, 0, 0, 0));
        }
        return tally;
    }

    /// <summary>
    /// What the tenant's invoice drafts of <paramref name="months"/> bill, as one API instance answers: usage per deployment
    /// (the async billing projection), and the spillover lines' tokens by type (input = prompt − cached, cached, output).
    /// </summary>
    public static async Task<(TokenTally Usage, long SpilledInput, long SpilledCached, long SpilledOutput)> InDraftsAsync(
        PlatformApi tenant, IEnumerable<string> months, CancellationToken ct)
    {
        var usage = default(TokenTally);
        long input = 0, cached = 0, output = 0;
        foreach (var month in months)
        {
            var draft = await tenant.GetAsync($"/v1/invoices/draft?month={month}", ct);
            foreach (var entry in draft.GetProperty("usage").EnumerateArray())
            {
                var t = entry.GetProperty("tokens");
                usage = usage.Add(new TokenTally(Long(t, "records"), Long(t, "promptTokens"), Long(t, "cachedTokens"), Long(t, "outputTokens"),
                    0, Long(t, "spilledPromptTokens"), Long(t, "spilledCachedTokens"), Long(t, "spilledOutputTokens")));
            }
            foreach (var line in draft.GetProperty("lines").EnumerateArray())
            {
                if (!line.TryGetProperty("tokens", out var tokens) || tokens.ValueKind != JsonValueKind.Number) continue;
                switch (line.GetProperty("tokenType").ToString())
                {
                    case "Input": input += tokens.GetInt64(); break;
                    case "Cached": cached += tokens.GetInt64(); break;
                    case "Output": output += tokens.GetInt64(); break;
                }
            }
        }
        return (usage, input, cached, output);
    }

    static long Long(JsonElement e, string name) => e.GetProperty(name).GetInt64();
}
