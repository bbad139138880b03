using System.Globalization;
using Marten;
using Throughput.Deployments;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>
/// One deployment's usage in one UTC hour by record time (the hour its last record finished in, as invoices count it),
/// with spilled tokens by type and the purchased rate: the state from which <see cref="PoolUtilizationProjection"/>
/// counts each hour in its utilization band.
/// </summary>
public sealed record UsageHour(
    string Id,
    string DeploymentId,
    DateTimeOffset Hour,
    int Period,
    TokenCounts Tokens,
    decimal WeightedTokens,
    long TokensPerMinute)
{
    public static DateTimeOffset HourOf(DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return new DateTimeOffset(utc.Year, utc.Month, utc.Day, utc.Hour, 0, 0, TimeSpan.Zero);
    }

    // Integer formatting rather than a date format string: every usage event is slotted by this id, live and in a rebuild.
    public static string IdOf(string deploymentId, DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return string.Create(CultureInfo.InvariantCulture, $"{deploymentId}:{utc.Year:D4}{utc.Month:D2}{utc.Day:D2}{utc.Hour:D2}");
    }

    /// <summary>The pools this hour's band is counted in, as the deployment's shares of one (null: whole in the pool it was bought in).</summary>
    public System.Collections.Immutable.ImmutableDictionary<string, decimal>? CountedIn { get; init; }

    /// <summary>Weighted tokens over what the purchased rate admits in an hour; above 1 when spillover or bursts served more.</summary>
    public decimal Utilization => UtilizationOf(WeightedTokens, TokensPerMinute);

    static decimal UtilizationOf(decimal weightedTokens, long tokensPerMinute) => tokensPerMinute == 0 ? 0 : weightedTokens / (tokensPerMinute * 60m);

    public static UsageHour Empty(string deploymentId, DateTimeOffset at) =>
        new(IdOf(deploymentId, at), deploymentId, HourOf(at), BillingMonth.Of(at).Index, default, 0, 0);

    /// <summary>
    /// An hour being summed within one fold, from how it was before: usage adds up and the rate is the highest it was
    /// bought at. One per hour a page touches, where a new hour per usage entry was a twentieth of a rebuild's allocations.
    /// </summary>
    internal sealed class Tally(UsageHour before)
    {
        TokenCounts _tokens = before.Tokens;
        decimal _weightedTokens = before.WeightedTokens;
        long _tokensPerMinute = before.TokensPerMinute;

        public UsageHour Before => before;

        public decimal Utilization => UtilizationOf(_weightedTokens, _tokensPerMinute);

        public void Add(UsageMetered e)
        {
            _tokens += e.Tokens;
            _weightedTokens += e.WeightedTokens;
            _tokensPerMinute = Math.Max(_tokensPerMinute, e.TokensPerMinute);
        }

        public UsageHour Summed => before with { Tokens = _tokens, WeightedTokens = _weightedTokens, TokensPerMinute = _tokensPerMinute };
    }
}

/// <summary>
/// The hours <see cref="PoolUtilizationProjection"/> keeps, in a table of plain columns: a page loads the hours it touches
/// in one statement and writes them back in one, where documents cost a statement and a JSON body per hour. At thousands
/// of deployments a page touches an hour of most of them, and their writes were the daemon's largest cost.
/// </summary>
public static class UsageHours
{
    public const string Table = "usage_hours";

    /// <summary>The table of this version of the read models: a version that rebuilds from the log starts from an empty one.</summary>
    public static string TableName(string schema) => $"{schema}.{Table}_{Configuration.ReadModels.Version}";

    public static Weasel.Postgresql.Tables.Table Definition(string schema)
    {
        var table = new Weasel.Postgresql.Tables.Table(new Weasel.Postgresql.PostgresqlObjectName(schema, $"{Table}_{Configuration.ReadModels.Version}",
            Weasel.Postgresql.SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("deployment_id").AsPrimaryKey();
        table.AddColumn<DateTimeOffset>("hour").AsPrimaryKey();
        table.AddColumn<int>("period").NotNull();
        foreach (var column in TokenCountColumns.Names) table.AddColumn<long>(column).NotNull();
        table.AddColumn<decimal>("weighted_tokens").NotNull();
        table.AddColumn<long>("tokens_per_minute").NotNull();
        table.AddColumn("counted_in", "jsonb");
        // An hour's row is rewritten once per page while its hour is current: room beside it keeps the update off the key's index (HOT).
        table.WithFillFactor(50);
        return table;
    }

    /// <summary>The stored hours among these (deployment, any moment of the hour), by id.</summary>
    public static async Task<Dictionary<string, UsageHour>> LoadAsync(IQuerySession session, IReadOnlyCollection<(string DeploymentId, DateTimeOffset At)> hours, CancellationToken ct)
    {
        if (hours.Count == 0) return new(StringComparer.Ordinal);
        var rows = await session.QueryAsync<UsageHour>(
            $"""
            select json_build_object('id', h.deployment_id || ':' || to_char(h.hour at time zone 'UTC', 'YYYYMMDDHH24'), 'deploymentId', h.deployment_id,
                'hour', h.hour, 'period', h.period, 'tokens', {TokenCountColumns.Json},
                'weightedTokens', weighted_tokens, 'tokensPerMinute', tokens_per_minute, 'countedIn', counted_in)
            from unnest(?::text[], ?::timestamptz[]) as k(deployment_id, hour)
            join {TableName(session.DocumentStore.Options.Events.DatabaseSchemaName)} h on h.deployment_id = k.deployment_id and h.hour = k.hour
            """, ct, hours.Select(h => h.DeploymentId).ToArray(), hours.Select(h => UsageHour.HourOf(h.At)).ToArray());
        return rows.ToDictionary(h => h.Id, StringComparer.Ordinal);
    }

    /// <summary>Queues the statement that writes these hours as they now are, in the page's transaction.</summary>
    public static void Write(IDocumentOperations operations, IReadOnlyCollection<UsageHour> hours)
    {
        if (hours.Count == 0) return;
        var serializer = operations.DocumentStore.Options.Serializer();
        operations.QueueSqlCommand(
            $"""
            insert into {TableName(operations.DocumentStore.Options.Events.DatabaseSchemaName)} as h
                (deployment_id, hour, period, {string.Join(", ", TokenCountColumns.Names)}, weighted_tokens, tokens_per_minute, counted_in)
            select * from unnest(?::text[], ?::timestamptz[], ?::int[], {TokenCountColumns.Parameters}, ?::numeric[], ?::bigint[], ?::jsonb[])
            on conflict (deployment_id, hour) do update set period = excluded.period,
                {string.Join(", ", TokenCountColumns.Names.Select(c => $"{c} = excluded.{c}"))},
                weighted_tokens = excluded.weighted_tokens, tokens_per_minute = excluded.tokens_per_minute, counted_in = excluded.counted_in
            """,
            [Column(h => h.DeploymentId), Column(h => h.Hour), Column(h => h.Period), .. TokenCountColumns.Arrays(hours, h => h.Tokens),
                Column(h => h.WeightedTokens), Column(h => h.TokensPerMinute), Column(h => h.CountedIn is null ? null : serializer.ToJson(h.CountedIn))]);
        return;

        object Column<T>(Func<UsageHour, T> value) => hours.Select(value).ToArray();
    }
}
