using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Forge;

/// <summary>The capacity a pool keeps: 0 drains it.</summary>
/// <param name="CapacityPtu">The PTUs the pool keeps; the Data Zone and Global deployments above it are placed elsewhere in their geography.</param>
public sealed record DrainPool(decimal CapacityPtu = 0);

/// <summary>A drain's events: the pools' (deployments' PTUs moved, then the capacity removed) and each moved deployment's new placement.</summary>
public sealed record DrainDecision(IReadOnlyList<PoolEvent> PoolEvents, IReadOnlyList<DeploymentPlaced> Placements);

/// <summary>The PTUs of the pool after the drain, and where its deployments went.</summary>
/// <param name="Pool">The drained pool as it is now.</param>
/// <param name="Moved">The deployments whose PTUs were placed elsewhere, and where.</param>
public sealed record DrainView(PoolView Pool, IReadOnlyList<MovedDeployment> Moved);

/// <param name="DeploymentId">The deployment moved.</param>
/// <param name="Placement">Where its PTUs are placed now.</param>
/// <param name="UnplacedPtu">PTUs that found no room elsewhere: the deployment is degraded while above 0.</param>
public sealed record MovedDeployment(string DeploymentId, IReadOnlyList<PlacedPtu> Placement, decimal UnplacedPtu);

/// <summary>An operator takes capacity out of a region: its deployments are placed elsewhere, or degraded where nothing has room.</summary>
public static class Drain
{
    public sealed class Validator : AbstractValidator<DrainPool>
    {
        public Validator() => RuleFor(x => x.CapacityPtu).GreaterThanOrEqualTo(0).LessThanOrEqualTo(10_000_000).PrecisionScale(14, 4, ignoreTrailingZeros: true);
    }

    /// <param name="pools">Every pool of the model, locked.</param>
    /// <param name="held">The active deployments placed in the drained region, each with the regions it may be placed in.</param>
    public static DrainDecision Decide(IReadOnlyList<CapacityPool> pools, string region, decimal capacity, IReadOnlyList<(Deployment Deployment, IReadOnlyList<string> Regions)> held, DateTimeOffset now)
    {
        var drained = pools.SingleOrDefault(p => p.Region == region) ?? throw RuleViolation.NotFound($"No pool in {region}.");
        if (drained.Phases is not null) throw RuleViolation.Conflict($"{drained.Id} is split by phase; draining a split region is not done yet.");
        if (capacity > drained.Capacity)
            throw RuleViolation.Unprocessable($"A drain lowers capacity; pool {drained.Id} has {drained.Capacity} PTU (PUT the pool to raise it).");
        var state = pools.ToDictionary(p => p.Region);
        state[region] = drained with { Capacity = capacity };
        var poolEvents = new List<PoolEvent>();
        var placements = new List<DeploymentPlaced>();
        // Those that can move go first, the newest first: a partial drain keeps the Regional and the oldest where they are.
        foreach (var (d, regions) in held.OrderBy(h => h.Regions.Count == 1).ThenByDescending(h => h.Deployment.CreatedAt).ThenBy(h => h.Deployment.Id, StringComparer.Ordinal))
        {
            if (state[region].Free >= 0) break;
            placements.Add(PlaceAgain(state, d, [.. regions, region], $"drain of {region}", poolEvents, now));
        }
        if (capacity < drained.Capacity) poolEvents.Add(new CapacityRemoved(drained.Id, drained.Capacity - capacity, now));
        return new DrainDecision(poolEvents, placements);
    }

    /// <summary>Degraded deployments placed again, the oldest first, where capacity has come back; those still without room anywhere are left as they are.</summary>
    /// <param name="pools">Every pool of the model, locked.</param>
    public static DrainDecision Restore(IReadOnlyList<CapacityPool> pools, IReadOnlyList<(Deployment Deployment, IReadOnlyList<string> Regions)> degraded, DateTimeOffset now,
        string reason = "capacity restored")
    {
        var state = pools.ToDictionary(p => p.Region);
        var poolEvents = new List<PoolEvent>();
        var placements = new List<DeploymentPlaced>();
        foreach (var (d, regions) in degraded.OrderBy(h => h.Deployment.CreatedAt).ThenBy(h => h.Deployment.Id, StringComparer.Ordinal))
        {
            var before = poolEvents.Count;
            var placed = PlaceAgain(state, d, regions, reason, poolEvents, now);
            if (poolEvents.Count > before) placements.Add(placed);
        }
        return new DrainDecision(poolEvents, placements);
    }

    /// <summary>One deployment placed again on the pools as the decision has left them so far (<paramref name="state"/>, updated).</summary>
    static DeploymentPlaced PlaceAgain(Dictionary<string, CapacityPool> state, Deployment d, IEnumerable<string> regions, string reason, List<PoolEvent> poolEvents, DateTimeOffset now)
    {
        var candidates = regions.Distinct().Where(state.ContainsKey).Select(r => state[r]).ToList();
        var placed = Placement.Place(candidates, d.Shares, d.Region, d.Id, d.Ptu, now);
        foreach (var e in placed.PoolEvents)
        {
            poolEvents.Add(e);
            var pool = candidates.Single(p => p.Id == e.PoolId);
            state[pool.Region] = state[pool.Region].Then(e);
        }
        return new DeploymentPlaced(d.Id, placed.Shares, placed.UnplacedPtu, reason, now);
    }

    public static IEndpointRouteBuilder MapDrain(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapPost("/v1/operator/pools/{model}/{region}/drain", async Task<Results<Ok<DrainView>, ProblemHttpResult>> (string model, string region, DrainPool command, IDocumentStore store, TimeProvider clock, CancellationToken ct) =>
            {
                if (catalog.Find(model) is null)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["model"] = ["Unknown model; GET /v1/models lists them."] });
                return TypedResults.Ok(await DecideAgainOnConflictAsync(store, session => DrainAsync(session, model, region, command.CapacityPtu, clock.GetUtcNow(), ct)));
            })
            .ValidateWith(new Validator())
            .RequireAuthorization(Policies.Operator).WithTags("Operator: capacity").WithName("DrainPool")
            .WithSummary("Lower a pool's capacity (to 0 unless capacityPtu says otherwise), even below what it holds: its Data Zone and Global deployments are placed in other regions of their geography, and what has no room anywhere is degraded. Billing does not change.")
            .ProducesProblem(404).ProducesProblem(422);

        app.MapPost("/v1/operator/pools/{model}/restore", async Task<Results<Ok<IReadOnlyList<MovedDeployment>>, ProblemHttpResult>> (string model, IDocumentStore store, TimeProvider clock, CancellationToken ct) =>
            {
                if (catalog.Find(model) is null)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["model"] = ["Unknown model; GET /v1/models lists them."] });
                return TypedResults.Ok(await DecideAgainOnConflictAsync(store, session => RestoreAsync(session, model, clock.GetUtcNow(), ct)));
            })
            .RequireAuthorization(Policies.Operator).WithTags("Operator: capacity").WithName("RestoreDegraded")
            .WithSummary("Place the model's degraded deployments again, the oldest first, where pools have room now (after raising a pool's capacity).")
            .ProducesProblem(400);
        return app;

        async Task<IReadOnlyList<MovedDeployment>> RestoreAsync(IDocumentSession session, string model, DateTimeOffset now, CancellationToken ct)
        {
            var regions = await session.Query<CapacityPool>().Where(p => p.Model == model).Select(p => p.Region).ToListAsync(ct);
            var pools = await PoolLocks.LockAsync(session, model, regions, ct);
            var active = await session.Query<Deployment>().Where(d => d.Model == model && d.Status == DeploymentStatus.Active).ToListAsync(ct);
            var degraded = active.Where(d => d.Degraded).Select(d => (d, catalog.PlacementRegions(d.Type, d.Region))).ToList();
            return await CommitAsync(session, pools, Restore(pools.Pools(), degraded, now), ct);
        }

        async Task<DrainView> DrainAsync(IDocumentSession session, string model, string region, decimal capacity, DateTimeOffset now, CancellationToken ct)
        {
            var regions = await session.Query<CapacityPool>().Where(p => p.Model == model).Select(p => p.Region).ToListAsync(ct);
            var pools = await PoolLocks.LockAsync(session, model, regions, ct);
            var active = await session.Query<Deployment>().Where(d => d.Model == model && d.Status == DeploymentStatus.Active).ToListAsync(ct);
            var held = active.Where(d => d.PlacedIn(region)).Select(d => (d, catalog.PlacementRegions(d.Type, d.Region))).ToList();
            var moved = await CommitAsync(session, pools, Decide(pools.Pools(), region, capacity, held, now), ct);
            var pool = await session.LoadAsync<CapacityPool>(CapacityPool.StreamId(model, region), ct);
            return new DrainView(PoolView.Of(pool!), moved);
        }
    }

    /// <summary>Runs a decision that moves deployments in a session of its own, and again on a fresh one when another writer got to a deployment first.</summary>
    public static async Task<T> DecideAgainOnConflictAsync<T>(IDocumentStore store, Func<IDocumentSession, Task<T>> decide)
    {
        for (var attempt = 1; ; attempt++)
        {
            await using var session = store.LightweightSession();
            try
            {
                return await decide(session);
            }
            catch (JasperFx.ConcurrencyException) when (attempt < 5)
            {
                // Metering appended to a moved deployment's stream meanwhile: decide again on what is there now.
            }
        }
    }

    /// <summary>Appends a decision to the locked pools and the moved deployments' streams, in one transaction.</summary>
    public static async Task<IReadOnlyList<MovedDeployment>> CommitAsync(IDocumentSession session, IReadOnlyList<JasperFx.Events.IEventStream<CapacityPool>> pools, DrainDecision decision, CancellationToken ct)
    {
        pools.Append(decision.PoolEvents);
        foreach (var placed in decision.Placements)
            (await session.Events.FetchForWriting<Deployment>(placed.DeploymentId, ct)).AppendOne(placed);
        await session.SaveChangesAsync(ct);
        return [.. decision.Placements.Select(p => new MovedDeployment(p.DeploymentId, p.Shares, p.UnplacedPtu))];
    }
}
