using System.Globalization;
using System.Runtime.InteropServices;
using JasperFx.Events;
using Marten;
using Throughput.Access;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Metering;

/// <summary>
/// One deployment's usage in one UTC minute by record time (the minute its usage event's last record finished in, as the
/// hourly usage and invoices count it), with the peak utilization that usage raised the bucket to and the throttles that began in the minute.
/// </summary>
public sealed record UsageMinute(
    string DeploymentId,
    DateTimeOffset Minute,
    TokenCounts Tokens,
    decimal WeightedTokens,
    decimal MaxUtilization,
    long TokensPerMinute,
    int Throttles)
{
    public static DateTimeOffset MinuteOf(DateTimeOffset at) => new(at.UtcTicks / TimeSpan.TicksPerMinute * TimeSpan.TicksPerMinute, TimeSpan.Zero);

    // Integer formatting rather than a date format string: the API names every minute it answers by this id.
    public static string IdOf(string deploymentId, DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return string.Create(CultureInfo.InvariantCulture, $"{deploymentId}:{utc.Year:D4}{utc.Month:D2}{utc.Day:D2}{utc.Hour:D2}{utc.Minute:D2}");
    }

    /// <summary>A minute being summed within one fold: usage adds up, its utilization peaks, the rate is the latest usage's.</summary>
    internal struct Tally(string deploymentId, DateTimeOffset minute)
    {
        TokenCounts _tokens;
        decimal _weightedTokens, _maxUtilization;
        long _tokensPerMinute;
        public int Throttles;

        public void Add(UsageMetered e)
        {
            _tokens += e.Tokens;
            _weightedTokens += e.WeightedTokens;
            _maxUtilization = Math.Max(_maxUtilization, e.Utilization);
            _tokensPerMinute = e.TokensPerMinute;
        }

        public readonly UsageMinute Summed => new(deploymentId, minute, _tokens, _weightedTokens, _maxUtilization, _tokensPerMinute, Throttles);
    }
}

/// <summary>
/// Minute-grain usage per deployment, kept by the daemon (so metering never waits on it) in a table of plain columns.
/// Everything a minute holds adds up (sums, a maximum, the latest rate), so a page of the log is folded in memory and
/// written as one statement that adds each (deployment, minute) to its row, without reading the rows first: at thousands
/// of deployments a page touches most of them once, and loading and rewriting a document for each cost more than the
/// metering that produced them. The page's transaction carries the daemon's progress, so a page is added once; a rebuild
/// empties the table first.
/// </summary>
public sealed class UsageMinuteProjection : Marten.Events.Projections.IProjection
{
    public const string Table = "usage_minutes";

    public static readonly Type[] EventTypes = [typeof(UsageBatchMetered), typeof(UsageMetered), typeof(DeploymentThrottled)];

    /// <summary>The table of this version of the read models: a version that rebuilds from the log starts from an empty one.</summary>
    public static string TableName(string schema) => $"{schema}.{Table}_{Configuration.ReadModels.Version}";

    public static Weasel.Postgresql.Tables.Table Definition(string schema)
    {
        var table = new Weasel.Postgresql.Tables.Table(new Weasel.Postgresql.PostgresqlObjectName(schema, $"{Table}_{Configuration.ReadModels.Version}",
            Weasel.Postgresql.SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("deployment_id").AsPrimaryKey();
        table.AddColumn<DateTimeOffset>("minute").AsPrimaryKey();
        foreach (var column in TokenCountColumns.Names) table.AddColumn<long>(column).NotNull();
        table.AddColumn<decimal>("weighted_tokens").NotNull();
        table.AddColumn<decimal>("max_utilization").NotNull();
        table.AddColumn<long>("tokens_per_minute").NotNull();
        table.AddColumn<int>("throttles").NotNull();
        // A minute's row is rewritten once per page while its minute is current: room beside it keeps the update off the key's index (HOT).
        table.WithFillFactor(50);
        return table;
    }

    /// <summary>The page's usage per (deployment, minute), in the order the log holds it.</summary>
    public static IReadOnlyCollection<UsageMinute> Fold(IEnumerable<object> events)
    {
        // Summed in place: a page holds thousands of usage entries over a few hundred minutes, and a new minute per entry
        // was most of what this fold allocated in a rebuild.
        var minutes = new Dictionary<(string, long), UsageMinute.Tally>();
        foreach (var e in events)
        {
            switch (e)
            {
                case UsageBatchMetered b:
                    for (var i = 0; i < b.Usage.Count; i++) Use(b.Usage[i]);
                    break;
                case UsageMetered u:
                    Use(u);
                    break;
                case DeploymentThrottled t:
                    TallyOf(t.DeploymentId, t.ThrottledAt).Throttles++;
                    break;
            }
        }
        return minutes.Values.Select(m => m.Summed).ToList();

        void Use(UsageMetered u) => TallyOf(u.DeploymentId, u.LastFinishedAt).Add(u);

        ref UsageMinute.Tally TallyOf(string deploymentId, DateTimeOffset at)
        {
            ref var tally = ref CollectionsMarshal.GetValueRefOrAddDefault(minutes, (deploymentId, at.UtcTicks / TimeSpan.TicksPerMinute), out var exists);
            if (!exists) tally = new UsageMinute.Tally(deploymentId, UsageMinute.MinuteOf(at));
            return ref tally;
        }
    }

    public Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        var minutes = Fold(events.Select(e => e.Data));
        if (minutes.Count == 0) return Task.CompletedTask;
        var table = TableName(operations.DocumentStore.Options.Events.DatabaseSchemaName);
        // A minute with throttles only (no records) leaves the rate its usage recorded.
        operations.QueueSqlCommand(
            $"""
            insert into {table} as m (deployment_id, minute, {string.Join(", ", TokenCountColumns.Names)}, weighted_tokens, max_utilization, tokens_per_minute, throttles)
            select * from unnest(?::text[], ?::timestamptz[], {TokenCountColumns.Parameters}, ?::numeric[], ?::numeric[], ?::bigint[], ?::int[])
            on conflict (deployment_id, minute) do update set
                {string.Join(", ", TokenCountColumns.Names.Select(c => $"{c} = m.{c} + excluded.{c}"))},
                weighted_tokens = m.weighted_tokens + excluded.weighted_tokens,
                max_utilization = greatest(m.max_utilization, excluded.max_utilization),
                tokens_per_minute = case when excluded.records > 0 then excluded.tokens_per_minute else m.tokens_per_minute end,
                throttles = m.throttles + excluded.throttles
            """,
            [Column(m => m.DeploymentId), Column(m => m.Minute), .. TokenCountColumns.Arrays(minutes, m => m.Tokens),
                Column(m => m.WeightedTokens), Column(m => m.MaxUtilization), Column(m => m.TokensPerMinute), Column(m => m.Throttles)]);
        return Task.CompletedTask;

        object Column<T>(Func<UsageMinute, T> value) => minutes.Select(value).ToArray();
    }

    /// <summary>The minutes stored for these deployments from <paramref name="from"/> to <paramref name="to"/> (both included), in time order.</summary>
    public static async Task<IReadOnlyList<UsageMinute>> ReadAsync(IQuerySession session, IReadOnlyCollection<string> deploymentIds, DateTimeOffset from, DateTimeOffset to, CancellationToken ct)
    {
        if (deploymentIds.Count == 0) return [];
        return await session.QueryAsync<UsageMinute>(
            $"""
            select json_build_object('deploymentId', deployment_id, 'minute', minute, 'tokens', {TokenCountColumns.Json},
                'weightedTokens', weighted_tokens, 'maxUtilization', max_utilization, 'tokensPerMinute', tokens_per_minute, 'throttles', throttles)
            from {TableName(session.DocumentStore.Options.Events.DatabaseSchemaName)}
            where deployment_id = any(?) and minute >= ? and minute <= ?
            order by minute, deployment_id
            """, ct, deploymentIds.ToArray(), from, to);
    }
}

/// <summary>A minute as the API answers it: counts as flat fields, spilled tokens as one sum (prompt and output).</summary>
/// <param name="Id">The minute's id: deployment and minute.</param>
/// <param name="DeploymentId">The deployment.</param>
/// <param name="Minute">The minute (UTC) the records finished in.</param>
/// <param name="Records">Metering records (requests).</param>
/// <param name="PromptTokens">Prompt tokens, cached ones included.</param>
/// <param name="CachedTokens">Prompt tokens served from the prompt cache.</param>
/// <param name="OutputTokens">Generated tokens.</param>
/// <param name="WeightedTokens">What they cost the GPU, in weighted tokens.</param>
/// <param name="SpilledRecords">Records served past the purchased rate.</param>
/// <param name="SpilledTokens">Their prompt and output tokens.</param>
/// <param name="MaxUtilization">The bucket's highest utilization in the minute (1 = 100 %).</param>
/// <param name="TokensPerMinute">The purchased rate in the minute, in weighted tokens.</param>
/// <param name="Throttles">How many times the deployment was throttled in the minute.</param>
public sealed record UsageMinuteView(
    string Id,
    string DeploymentId,
    DateTimeOffset Minute,
    long Records,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    decimal WeightedTokens,
    long SpilledRecords,
    long SpilledTokens,
    decimal MaxUtilization,
    long TokensPerMinute,
    int Throttles)
{
    public static UsageMinuteView Of(UsageMinute m) => new(UsageMinute.IdOf(m.DeploymentId, m.Minute), m.DeploymentId, m.Minute, m.Tokens.Records, m.Tokens.PromptTokens, m.Tokens.CachedTokens,
        m.Tokens.OutputTokens, m.WeightedTokens, m.Tokens.SpilledRecords, m.Tokens.SpilledPromptTokens + m.Tokens.SpilledOutputTokens, m.MaxUtilization,
        m.TokensPerMinute, m.Throttles);
}

public static class UsageSeries
{
    static readonly TimeSpan MaxRange = TimeSpan.FromDays(7);

    static readonly DateTimeOffset Earliest = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero), Latest = new(2999, 12, 31, 0, 0, 0, TimeSpan.Zero);

    public static IEndpointRouteBuilder MapUsageSeries(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/deployments/{deploymentId}/usage", async Task<Results<Ok<IEnumerable<UsageMinuteView>>, ProblemHttpResult>> (string deploymentId, DateTimeOffset? from, DateTimeOffset? to, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                await session.LoadOwnedAsync(deploymentId, http.User.TenantId()!, ct);
                foreach (var (name, at) in new[] { ("from", from), ("to", to) })
                {
                    if (at is { } t && (t < Earliest || t > Latest))
                        return Validation.Invalid(new Dictionary<string, string[]> { [name] = [$"Times from {Earliest:yyyy-MM-dd} to {Latest:yyyy-MM-dd} only."] }, 422);
                }
                var end = to ?? clock.GetUtcNow();
                var start = from ?? end.AddHours(-1);
                if (end < start || end - start > MaxRange)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["from"] = ["from must be before to, at most 7 days apart."] });
                var minutes = await UsageMinuteProjection.ReadAsync(session, [deploymentId], UsageMinute.MinuteOf(start), end, ct);
                return TypedResults.Ok(minutes.Select(UsageMinuteView.Of));
            })
            .RequireAuthorization(Policies.Tenant).WithTags("Usage").WithName("GetUsageSeries")
            .WithSummary("Usage per minute (UTC): tokens by type, weighted tokens, spilled, peak utilization, purchased rate, throttles. Default: the last hour.")
            .ProducesProblem(404);
        return app;
    }
}
