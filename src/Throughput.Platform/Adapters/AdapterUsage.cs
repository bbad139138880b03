using JasperFx.Events;
using JasperFx.Events.Grouping;
using Marten;
using Marten.Events.Projections;
using Throughput.Access;
using Throughput.Deployments;
using Throughput.Http;
using Throughput.Invoicing;

namespace Throughput.Adapters;

/// <summary>One adapter's usage on one deployment in one calendar month (UTC) by record time, as invoices count usage.</summary>
public sealed record AdapterMonth(string Id, string DeploymentId, string AdapterId, string Month, TokenCounts Tokens, decimal WeightedTokens)
{
    public static string IdOf(string deploymentId, string adapterId, string month) => $"{deploymentId}|{adapterId}|{month}";
}

/// <summary>One adapter's part of a usage event, with the deployment that served it: what <see cref="AdapterUsageProjection"/> folds.</summary>
public sealed record AdapterUsed(string DeploymentId, AdapterUsage Usage);

/// <summary>
/// Usage per adapter, from the adapter parts of the usage events (only deployments that serve adapters have them); async,
/// so the metering path does no more per adapter than sum its records into the usage event it writes anyway.
/// </summary>
public sealed class AdapterUsageProjection : MultiStreamProjection<AdapterMonth, string>
{
    public AdapterUsageProjection()
    {
        FanOut<UsageBatchMetered, AdapterUsed>(PartsOf, FanoutMode.BeforeGrouping);
        Identity<AdapterUsed>(e => AdapterMonth.IdOf(e.DeploymentId, e.Usage.AdapterId, e.Usage.Month));
    }

    /// <summary>The adapter parts of a usage event; most events have none, and then cost no allocation.</summary>
    static IEnumerable<AdapterUsed> PartsOf(UsageBatchMetered batch)
    {
        List<AdapterUsed>? parts = null;
        for (var i = 0; i < batch.Usage.Count; i++)
            if (batch.Usage[i] is { Adapters: { } adapters } usage)
                foreach (var adapter in adapters) (parts ??= []).Add(new AdapterUsed(usage.DeploymentId, adapter));
        return parts ?? (IEnumerable<AdapterUsed>)[];
    }

    public static AdapterMonth Create(AdapterUsed e) =>
        new(AdapterMonth.IdOf(e.DeploymentId, e.Usage.AdapterId, e.Usage.Month), e.DeploymentId, e.Usage.AdapterId, e.Usage.Month, e.Usage.Tokens, e.Usage.WeightedTokens);

    public static AdapterMonth Apply(AdapterUsed e, AdapterMonth month) =>
        month with { Tokens = month.Tokens + e.Usage.Tokens, WeightedTokens = month.WeightedTokens + e.Usage.WeightedTokens };
}

/// <summary>An adapter's usage in a month as the API and CSV answer it.</summary>
/// <param name="DeploymentId">The adapter deployment or set that served it.</param>
/// <param name="AdapterId">The adapter, as metering records name it.</param>
/// <param name="Month">The month (yyyy-MM, UTC) the records finished in.</param>
/// <param name="Records">Metering records (requests) served.</param>
/// <param name="PromptTokens">Prompt tokens, cached ones included.</param>
/// <param name="CachedTokens">Prompt tokens served from the prompt cache.</param>
/// <param name="OutputTokens">Generated tokens.</param>
/// <param name="WeightedTokens">What the records cost the GPU: prompt − cached × cached deduction + output weight × output.</param>
/// <param name="SpilledRecords">Records served past the purchased rate (spillover).</param>
public sealed record AdapterUsageView(
    string DeploymentId,
    string AdapterId,
    string Month,
    long Records,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    decimal WeightedTokens,
    long SpilledRecords)
{
    public static AdapterUsageView Of(AdapterMonth m) => new(m.DeploymentId, m.AdapterId, m.Month, m.Tokens.Records, m.Tokens.PromptTokens,
        m.Tokens.CachedTokens, m.Tokens.OutputTokens, m.WeightedTokens, m.Tokens.SpilledRecords);

    public static readonly IReadOnlyList<Column<AdapterUsageView>> Columns =
    [
        new("deploymentId", v => v.DeploymentId), new("adapterId", v => v.AdapterId), new("month", v => v.Month),
        new("records", v => Tables.Number(v.Records)), new("promptTokens", v => Tables.Number(v.PromptTokens)),
        new("cachedTokens", v => Tables.Number(v.CachedTokens)), new("outputTokens", v => Tables.Number(v.OutputTokens)),
        new("weightedTokens", v => Tables.Number(v.WeightedTokens)), new("spilledRecords", v => Tables.Number(v.SpilledRecords)),
    ];
}

public static class AdapterUsageApi
{
    public static IEndpointRouteBuilder MapAdapterUsage(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/deployments/{deploymentId}/usage/adapters", async (string deploymentId, string? month, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                await session.LoadOwnedAsync(deploymentId, http.User.TenantId()!, ct);
                if (month is not null && !BillingMonth.TryParse(month, out _)) return BillingMonth.Problem("month", month);
                var period = month ?? BillingMonth.Of(clock.GetUtcNow()).ToString();
                var rows = await session.Query<AdapterMonth>().Where(m => m.DeploymentId == deploymentId && m.Month == period).ToListAsync(ct);
                return Tables.Respond(http, [.. rows.OrderBy(r => r.AdapterId, StringComparer.Ordinal).Select(AdapterUsageView.Of)], $"adapter-usage-{deploymentId}-{period}", AdapterUsageView.Columns);
            })
            .RequireAuthorization(Policies.Tenant).WithTags("Usage").WithName("GetAdapterUsage")
            .WithSummary("Usage per adapter of an adapter deployment or set in a month (UTC, default this month), JSON or CSV (?format=csv); the adapters' usage sums to the deployment's.")
            .Produces<IReadOnlyList<AdapterUsageView>>(200, "application/json", "text/csv").ProducesProblem(404);
        return app;
    }
}
