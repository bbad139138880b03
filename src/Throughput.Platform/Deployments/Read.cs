using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Http;

namespace Throughput.Deployments;

/// <summary>A deployment as its tenant reads it; <see cref="Prices"/> are the ones fixed at purchase (what it is billed at), not today's catalog.</summary>
/// <param name="Id">The deployment's id.</param>
/// <param name="Name">The tenant's name for it.</param>
/// <param name="Model">The catalog model it serves.</param>
/// <param name="Region">The region it was bought in; Placement says where its PTUs are served.</param>
/// <param name="Type">Regional (one region), DataZone (a geography) or Global (any region).</param>
/// <param name="Ptu">The PTUs it holds now (0 once released).</param>
/// <param name="Spillover">Whether requests past the purchased rate are served and billed per token instead of refused.</param>
/// <param name="Status">Active, or Released.</param>
/// <param name="CreatedAt">When it was bought.</param>
/// <param name="Admission">The rate and burst its PTUs admit.</param>
/// <param name="Bucket">Its leaky bucket and usage totals now.</param>
/// <param name="Revision">Its stream version, also its ETag: send it as If-Match to resize or release it.</param>
/// <param name="ReleasedAt">When its PTUs were given back; null while active.</param>
/// <param name="Adapters">The adapters it serves; null for a base-model deployment.</param>
/// <param name="Currency">The currency it is billed in.</param>
/// <param name="Prices">Its prices, fixed when it was bought.</param>
/// <param name="Placement">Where its PTUs are placed: region and PTUs of each share.</param>
/// <param name="Degraded">Whether some of its PTUs found no room and are not served (UnplacedPtu above 0).</param>
/// <param name="UnplacedPtu">PTUs bought but not placed in any pool.</param>
public sealed record DeploymentView(
    string Id,
    string Name,
    string Model,
    string Region,
    DeploymentType Type,
    decimal Ptu,
    bool Spillover,
    DeploymentStatus Status,
    DateTimeOffset CreatedAt,
    AdmissionLimit Admission,
    BucketView Bucket,
    long Revision,
    DateTimeOffset? ReleasedAt,
    DeploymentAdapters? Adapters,
    string Currency,
    PriceList? Prices,
    IReadOnlyList<PlacedPtu> Placement,
    bool Degraded,
    decimal UnplacedPtu)
{
    public static DeploymentView Of(Deployment d, DateTimeOffset now)
    {
        var level = d.LevelAt(now);
        return new(d.Id, d.Name, d.Model, d.Region, d.Type, d.Ptu, d.Spillover, d.Status, d.CreatedAt, d.Limit,
            new BucketView(decimal.Round(level, 2), d.UtilizationOf(level), d.Throttled, d.Throttled ? d.RetryAfterMs(level) : 0,
                d.Usage.Records, d.WeightedTokens, d.Usage.SpilledRecords),
            d.Revision, d.ReleasedAt, d.Adapters, d.Currency, d.Prices, d.Shares, d.Degraded, d.UnplacedPtu);
    }
}

/// <summary>The leaky bucket now: level in weighted tokens, utilization (1 = 100%), throttle state, and what has been metered.</summary>
/// <param name="Level">Weighted tokens in the leaky bucket now: filled by metered, non-spilled usage, drained at the purchased rate.</param>
/// <param name="Utilization">Bucket level ÷ burst; 1 (100 %) throttles the deployment.</param>
/// <param name="Throttled">Whether the deployment is throttled: it crossed 100 % and has not yet drained below 95 %.</param>
/// <param name="RetryAfterMs">While throttled: milliseconds until the bucket drains below 95 %; else 0.</param>
/// <param name="MeteredRecords">Metering records counted into the deployment so far.</param>
/// <param name="WeightedTokens">Weighted tokens metered into the deployment so far.</param>
/// <param name="SpilledRecords">Records served past the rate and billed as spillover so far.</param>
public sealed record BucketView(decimal Level, decimal Utilization, bool Throttled, long RetryAfterMs, long MeteredRecords, decimal WeightedTokens, long SpilledRecords);

public static class ReadDeployments
{
    /// <summary>A tenant's deployment, or 404 alike for one that does not exist and one of another tenant.</summary>
    public static async Task<Deployment> LoadOwnedAsync(this IQuerySession session, string deploymentId, string tenantId, CancellationToken ct) =>
        await DeploymentMeters.LoadDeploymentAsync(session, deploymentId, ct) is { } d && d.TenantId == tenantId
            ? d
            : throw RuleViolation.NotFound($"No deployment '{deploymentId}'.");

    public static void EnsureOwnedBy(this Deployment? deployment, string deploymentId, string tenantId)
    {
        if (deployment is null || deployment.TenantId != tenantId)
            throw RuleViolation.NotFound($"No deployment '{deploymentId}'.");
    }

    public static Ok<DeploymentView> Ok(HttpContext http, Deployment d)
    {
        ETags.Set(http, d.Revision);
        return TypedResults.Ok(DeploymentView.Of(d, Now(http)));
    }

    /// <summary>A deployment just written, with its meter on (its stream does not carry usage).</summary>
    public static async Task<Ok<DeploymentView>> OkAsync(HttpContext http, IQuerySession session, Deployment d, CancellationToken ct) =>
        Ok(http, (await DeploymentMeters.LoadAsync(session, [d.Id], ct)).GetValueOrDefault(d.Id) is { } meter ? meter.On(d) : d);

    static DateTimeOffset Now(HttpContext http) => http.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();

    public static RouteGroupBuilder MapReadDeployments(this RouteGroupBuilder group)
    {
        group.MapGet("/", async (HttpContext http, IQuerySession session, CancellationToken ct) =>
        {
            var tenantId = http.User.TenantId()!;
            var deployments = await session.Query<Deployment>().Where(d => d.TenantId == tenantId).OrderBy(d => d.CreatedAt).ToListAsync(ct);
            var meters = await DeploymentMeters.LoadAsync(session, [.. deployments.Select(d => d.Id)], ct);
            var now = Now(http);
            return TypedResults.Ok(deployments.Select(d => DeploymentView.Of(meters.TryGetValue(d.Id, out var m) ? m.On(d) : d, now)));
        }).WithName("ListDeployments").WithSummary("List the caller's deployments.");

        group.MapGet("/{deploymentId}", async (string deploymentId, HttpContext http, IQuerySession session, CancellationToken ct) =>
                Ok(http, await session.LoadOwnedAsync(deploymentId, http.User.TenantId()!, ct)))
            .WithName("GetDeployment").WithHeader(ContractHeader.ETag).WithSummary("One deployment with its admission limit; the ETag is its version.")
            .ProducesProblem(404);
        return group;
    }
}
