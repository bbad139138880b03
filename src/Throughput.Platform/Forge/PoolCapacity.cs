using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Forge;

/// <summary>
/// An operator states a pool's capacity. Raising it places the degraded deployments that may use the pool again, in the
/// same transaction and under the same locks as every purchase (the pools of the regions they may use, in the order of
/// their ids).
/// </summary>
public static class PoolCapacity
{
    public static IEndpointRouteBuilder MapPoolCapacity(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapPut("/v1/operator/pools/{model}/{region}", async Task<Results<Ok<PoolView>, ProblemHttpResult>> (string model, string region, SetPoolCapacity command, IDocumentStore store, IQuerySession query, TimeProvider clock, CancellationToken ct) =>
            {
                var (problem, calibration) = await Pools.CheckAsync(catalog, model, region, command, query, ct);
                if (problem is not null) return problem;
                return TypedResults.Ok(await Drain.DecideAgainOnConflictAsync(store, session => SetAsync(session, model, region, command, calibration, clock.GetUtcNow(), ct)));
            })
            .ValidateWith(new Pools.Validator())
            .RequireAuthorization(Policies.Operator).WithTags("Operator: capacity")
            .WithName("SetPoolCapacity").WithSummary("State the capacity for a model in a region, in PTUs or as GPUs of a calibrated kind; it may not go below what is sold. Raising it places degraded Data Zone and Global deployments that may use the region again, the oldest first.")
            .ProducesProblem(409);
        return app;

        async Task<PoolView> SetAsync(IDocumentSession session, string model, string region, SetPoolCapacity command, GpuCalibration? calibration, DateTimeOffset now, CancellationToken ct)
        {
            var id = CapacityPool.StreamId(model, region);
            // Whatever may be placed in this region may be placed only in its geographies' regions (a Global deployment's), or only here.
            var locked = await PoolLocks.LockAsync(session, model, [.. catalog.PlacementRegions(DeploymentType.Global, region), region], ct);
            var stream = locked.Single(s => s.Key == id);
            PhasePools.EnsureOneKind(model, region, ServingPhase.Whole, calibration is not null ? command.Gpus!.Value * calibration.PtuPerGpu : command.CapacityPtu!.Value,
                await session.LoadManyAsync<CapacityPool>(ct, PhasePools.StreamIds(model, region)));
            var events = (calibration is not null
                ? PoolDecisions.SetGpus(stream.Aggregate, model, region, calibration, command.Gpus!.Value, now)
                : PoolDecisions.SetCapacity(stream.Aggregate, model, region, command.CapacityPtu!.Value, now)).ToList();
            var restore = new DrainDecision([], []);
            if (events.OfType<CapacityAdded>().Any())
            {
                var raised = events.Aggregate(stream.Aggregate, (pool, e) => e is PoolOpened opened ? CapacityPool.Create(opened) : pool!.Then(e))!;
                var pools = locked.Pools().Where(p => p.Id != id).Append(raised).ToList();
                // Only the degraded are loaded (PostgreSQL filters the model's deployment documents on unplacedPtu).
                var degraded = await session.Query<Deployment>()
                    .Where(d => d.Model == model && d.Status == DeploymentStatus.Active && d.UnplacedPtu > 0).ToListAsync(ct);
                restore = Drain.Restore(pools, [.. degraded.Select(d => (d, catalog.PlacementRegions(d.Type, d.Region))).Where(d => d.Item2.Contains(region))], now,
                    $"pool raised in {region}");
            }
            // A new pool's stream starts with what the restore placed in it; the others' are locked and appended to.
            events.AddRange(restore.PoolEvents.Where(e => e.PoolId == id));
            if (stream.Aggregate is null) session.Events.StartStream<CapacityPool>(id, events.Cast<object>().ToArray());
            else stream.AppendMany(events.Cast<object>().ToArray());
            await Drain.CommitAsync(session, locked, restore with { PoolEvents = [.. restore.PoolEvents.Where(e => e.PoolId != id)] }, ct);
            return PoolView.Of((await session.LoadAsync<CapacityPool>(id, ct))!);
        }
    }
}
