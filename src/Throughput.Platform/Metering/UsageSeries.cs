using System.Globalization;
using JasperFx.Events;
using JasperFx.Events.Grouping;
using Marten;
using Marten.Events.Projections;
using Throughput.Access;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Metering;

/// <summary>
/// One deployment's usage in one UTC minute by record time (the minute its usage event's last record finished in, as the
/// hourly usage and invoices count it), with the peak utilization that usage raised the bucket to and the throttles that began in the minute.
/// </summary>
public sealed record UsageMinute(
    string Id,
    string DeploymentId,
    DateTimeOffset Minute,
    TokenCounts Tokens,
    decimal WeightedTokens,
    decimal MaxUtilization,
    long TokensPerMinute,
    int Throttles)
{
    public static DateTimeOffset MinuteOf(DateTimeOffset at) =>
        new(at.UtcDateTime.Year, at.UtcDateTime.Month, at.UtcDateTime.Day, at.UtcDateTime.Hour, at.UtcDateTime.Minute, 0, TimeSpan.Zero);

    // Integer formatting rather than a date format string: every usage event is slotted by this id, live and in a rebuild.
    public static string IdOf(string deploymentId, DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return string.Create(CultureInfo.InvariantCulture, $"{deploymentId}:{utc.Year:D4}{utc.Month:D2}{utc.Day:D2}{utc.Hour:D2}{utc.Minute:D2}");
    }

    public static UsageMinute Empty(string deploymentId, DateTimeOffset at) =>
        new(IdOf(deploymentId, at), deploymentId, MinuteOf(at), default, 0, 0, 0, 0);

    public UsageMinute Add(UsageMetered e) => this with
    {
        Tokens = Tokens + e.Tokens,
        WeightedTokens = WeightedTokens + e.WeightedTokens,
        MaxUtilization = Math.Max(MaxUtilization, e.Utilization),
        TokensPerMinute = e.TokensPerMinute,
    };
}

/// <summary>Minute-grain usage per deployment; async (Marten daemon), so metering never waits on it.</summary>
public sealed partial class UsageSeriesProjection : MultiStreamProjection<UsageMinute, string>
{
    public UsageSeriesProjection()
    {
        FanOut<UsageBatchMetered, UsageMetered>(b => b.Usage, FanoutMode.BeforeGrouping);
        Identity<UsageMetered>(e => UsageMinute.IdOf(e.DeploymentId, e.LastFinishedAt));
        Identity<DeploymentThrottled>(e => UsageMinute.IdOf(e.DeploymentId, e.ThrottledAt));
    }

    public static UsageMinute Create(UsageMetered e) => UsageMinute.Empty(e.DeploymentId, e.LastFinishedAt).Add(e);

    public static UsageMinute Create(DeploymentThrottled e) => UsageMinute.Empty(e.DeploymentId, e.ThrottledAt) with { Throttles = 1 };

    public static UsageMinute Apply(UsageMetered e, UsageMinute minute) => minute.Add(e);

    public static UsageMinute Apply(DeploymentThrottled e, UsageMinute minute) => minute with { Throttles = minute.Throttles + 1 };
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
    public static UsageMinuteView Of(UsageMinute m) => new(m.Id, m.DeploymentId, m.Minute, m.Tokens.Records, m.Tokens.PromptTokens, m.Tokens.CachedTokens,
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
                var minutes = await session.Query<UsageMinute>()
                    .Where(m => m.DeploymentId == deploymentId && m.Minute >= UsageMinute.MinuteOf(start) && m.Minute <= end)
                    .OrderBy(m => m.Minute).ToListAsync(ct);
                return TypedResults.Ok(minutes.Select(UsageMinuteView.Of));
            })
            .RequireAuthorization(Policies.Tenant).WithTags("Usage").WithName("GetUsageSeries")
            .WithSummary("Usage per minute (UTC): tokens by type, weighted tokens, spilled, peak utilization, purchased rate, throttles. Default: the last hour.")
            .ProducesProblem(404);
        return app;
    }
}
