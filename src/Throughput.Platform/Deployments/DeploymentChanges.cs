using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Deployments;

/// <summary>A customer's change to a deployment it holds.</summary>
public abstract record DeploymentChange
{
    /// <summary>Whether the change must name the revision it was decided on (If-Match): those that change what was bought.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public virtual bool RequiresIfMatch => true;

    /// <summary>Whether the change can move PTUs between the deployment and its pool.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public virtual bool MovesPtus => true;
}

/// <summary>A new PTU amount for a deployment; send its ETag as <c>If-Match</c>.</summary>
/// <param name="Ptu">The new amount: more than 0, at most 100,000, at most 4 decimals; the model's minimum and increment apply.</param>
public sealed record ResizeDeployment(decimal Ptu) : DeploymentChange;

public sealed record ReleaseDeployment : DeploymentChange;

/// <summary>Spillover on or off: requests past the rate served and billed per token, or refused.</summary>
/// <param name="Enabled">True to serve and bill requests past the purchased rate per token.</param>
public sealed record SetSpillover(bool Enabled) : DeploymentChange
{
    [System.Text.Json.Serialization.JsonIgnore]
    public override bool RequiresIfMatch => false;

    [System.Text.Json.Serialization.JsonIgnore]
    public override bool MovesPtus => false;
}

/// <summary>What a change decides: the deployment's events and the pool's, committed together.</summary>
public sealed record ChangeDecision(IReadOnlyList<DeploymentEvent> Events, IReadOnlyList<PoolEvent> PoolEvents);

/// <summary>The one way a customer's change reaches a deployment: decided purely, then written by <see cref="ApplyAsync"/>.</summary>
public static class DeploymentChanges
{
    /// <param name="model">The deployment's model as the catalog sells it now; null when it is no longer sold.</param>
    /// <param name="pools">When the change can move PTUs: the deployment's pool, or for a placed one the pools it may be placed in.</param>
    public static ChangeDecision Decide(Deployment deployment, Tenant tenant, ModelEntry? model, IReadOnlyList<CapacityPool> pools, DeploymentChange change, DateTimeOffset now)
    {
        IReadOnlyList<DeploymentEvent> events = change switch
        {
            ResizeDeployment resize => Resize.Decide(deployment, tenant, model ?? throw RuleViolation.Conflict($"{deployment.Model} is no longer sold."), resize, now),
            ReleaseDeployment => Release.Decide(deployment, now),
            SetSpillover spillover => Spillover.Decide(deployment, tenant, spillover.Enabled, now),
            _ => throw new ArgumentOutOfRangeException(nameof(change), change.GetType().Name, "not a deployment change"),
        };
        if (deployment.Placement is not null) return Replaced(deployment, pools, events);
        return new ChangeDecision(events, [.. events.SelectMany(e => PoolEventsOf(deployment, pools.SingleOrDefault(), e))]);
    }

    /// <summary>A placed deployment's PTUs follow placement: a resize places the new amount, keeping what it holds where it fits.</summary>
    static ChangeDecision Replaced(Deployment d, IReadOnlyList<CapacityPool> pools, IReadOnlyList<DeploymentEvent> events)
    {
        switch (events)
        {
            case [DeploymentReleased r]:
                return new ChangeDecision(events, [.. d.Shares.Select(s => new PtusFreed(CapacityPool.StreamId(d.Model, s.Region), d.Id, s.Ptu, r.ReleasedAt))]);
            case [DeploymentResized r]:
                var placed = Placement.Place(pools, d.Shares, d.Region, d.Id, r.ToPtu, r.ResizedAt);
                if (r.ToPtu > r.FromPtu && placed.UnplacedPtu > 0)
                    throw RuleViolation.Conflict($"The pools of {d.Model} in {string.Join(", ", pools.Select(p => p.Region))} are exhausted: {pools.Sum(p => Math.Max(0, p.Free))} PTU free in all, {r.ToPtu - r.FromPtu} PTU more requested.");
                return new ChangeDecision([r, new DeploymentPlaced(d.Id, placed.Shares, placed.UnplacedPtu, "resize", r.ResizedAt)], placed.PoolEvents);
            default:
                return new ChangeDecision(events, []);
        }
    }

    static PoolEvent[] PoolEventsOf(Deployment d, CapacityPool? pool, DeploymentEvent e) => e switch
    {
        DeploymentResized r when r.ToPtu > r.FromPtu => PoolDecisions.Allocate(pool, d.Model, d.Region, d.Id, r.ToPtu - r.FromPtu, r.ResizedAt),
        DeploymentResized r => PoolDecisions.Free(PoolOf(d, pool), d.Id, r.FromPtu - r.ToPtu, r.ResizedAt),
        DeploymentReleased r => PoolDecisions.Free(PoolOf(d, pool), d.Id, r.Ptu, r.ReleasedAt),
        _ => [],
    };

    static CapacityPool PoolOf(Deployment d, CapacityPool? pool) =>
        pool ?? throw new InvalidOperationException($"deployment {d.Id} gives back PTUs to a pool that does not exist");

    /// <summary>
    /// Checks the caller's If-Match and ownership, decides, and commits the deployment's and the pool's events in one
    /// transaction. Decided again on a fresh session when metering appended to the stream between the read and the commit:
    /// the caller's If-Match is about its own revision, which usage never changes.
    /// </summary>
    public static async Task<Results<Ok<DeploymentView>, ProblemHttpResult>> ApplyAsync(HttpContext http, string deploymentId, DeploymentChange change, CancellationToken ct)
    {
        var store = http.RequestServices.GetRequiredService<IDocumentStore>();
        for (var attempt = 1; ; attempt++)
        {
            await using var session = store.LightweightSession();
            try
            {
                return await DecideAndCommitAsync(http, session, deploymentId, change, ct);
            }
            catch (JasperFx.ConcurrencyException) when (attempt < 5)
            {
            }
        }
    }

    static async Task<Results<Ok<DeploymentView>, ProblemHttpResult>> DecideAndCommitAsync(HttpContext http, IDocumentSession session, string deploymentId, DeploymentChange change, CancellationToken ct)
    {
        var services = http.RequestServices;
        long? expected = null;
        if (change.RequiresIfMatch)
        {
            var (revision, problem) = ETags.RequireIfMatch(http);
            if (problem is not null) return problem;
            expected = revision;
        }
        var stream = await session.Events.FetchForWriting<Deployment>(deploymentId, ct);
        stream.Aggregate.EnsureOwnedBy(deploymentId, http.User.TenantId()!);
        var deployment = stream.Aggregate!;
        if (expected is { } required && deployment.Revision != required) return ETags.Stale();

        var tenant = await session.LoadAsync<Tenant>(Tenant.StreamId(deployment.TenantId), ct) ?? throw RuleViolation.NotFound($"No tenant '{deployment.TenantId}'.");
        // The pools' row locks serialise every change of their PTUs with purchases: no overselling, no retry storm.
        var catalog = services.GetRequiredService<ModelCatalog>();
        IEnumerable<string> regions = deployment.Placement is null ? [deployment.Region]
            : [.. catalog.PlacementRegions(deployment.Type, deployment.Region), .. deployment.Shares.Select(s => s.Region)];
        var pools = change.MovesPtus ? await PoolLocks.LockAsync(session, deployment.Model, regions, ct) : [];
        var decision = Decide(deployment, tenant, catalog.Find(deployment.Model), pools.Pools(), change, services.GetRequiredService<TimeProvider>().GetUtcNow());
        if (decision.Events.Count > 0)
        {
            stream.AppendMany(decision.Events);
            pools.Append(decision.PoolEvents);
            await session.SaveChangesAsync(ct);
            deployment = deployment.Then(decision.Events);
        }
        return await ReadDeployments.OkAsync(http, session, deployment, ct);
    }
}
