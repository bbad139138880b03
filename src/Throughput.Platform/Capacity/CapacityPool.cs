using Throughput.Http;

namespace Throughput.Capacity;

/// <summary>An event of a capacity pool's stream.</summary>
public abstract record PoolEvent(string PoolId);

/// <summary>A pool was opened; events from before phase-split pools carry no phase: the pool serves whole requests.</summary>
public sealed record PoolOpened(string PoolId, string Model, string Region, DateTimeOffset OpenedAt, ServingPhase Phase = ServingPhase.Whole) : PoolEvent(PoolId);

public sealed record CapacityAdded(string PoolId, decimal Ptu, DateTimeOffset At) : PoolEvent(PoolId);

public sealed record CapacityRemoved(string PoolId, decimal Ptu, DateTimeOffset At) : PoolEvent(PoolId);

public sealed record PtusAllocated(string PoolId, string DeploymentId, decimal Ptu, DateTimeOffset At) : PoolEvent(PoolId);

public sealed record PtusFreed(string PoolId, string DeploymentId, decimal Ptu, DateTimeOffset At) : PoolEvent(PoolId);

/// <summary>The pool's capacity was stated as GPUs of a kind, at the PTUs per GPU that kind's calibration gave for the model.</summary>
public sealed record PoolSizedFromGpus(string PoolId, string GpuKind, int Gpus, decimal PtuPerGpu, DateTimeOffset At) : PoolEvent(PoolId);

/// <summary>The pool's capacity was stated in PTUs again: the GPUs it was sized from no longer describe it.</summary>
public sealed record PoolSizedInPtus(string PoolId, DateTimeOffset At) : PoolEvent(PoolId);

/// <summary>The GPUs a pool's capacity was sized from.</summary>
/// <param name="GpuKind">The GPU kind the pool is made of.</param>
/// <param name="Gpus">How many GPUs of that kind.</param>
/// <param name="PtuPerGpu">The PTUs one GPU sells, from the latest calibration.</param>
public sealed record GpuSizing(string GpuKind, int Gpus, decimal PtuPerGpu);

/// <summary>GPU capacity of one model in one region, in PTUs. It never sells more than it has.</summary>
public sealed record CapacityPool(string Id, string Model, string Region, decimal Capacity, decimal Sold, long Version)
{
    public decimal Free => Capacity - Sold;

    /// <summary>Null when the operator stated the capacity in PTUs.</summary>
    public GpuSizing? Gpus { get; init; }

    /// <summary>A region's prompt or generation pool; whole otherwise. A phase pool's PTUs are PTUs of that phase's work.</summary>
    public ServingPhase Phase { get; init; }

    /// <summary>Set only on a split region's pools joined for a decision (<see cref="PhasePools.ByRegion"/>): never stored.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<CapacityPool>? Phases { get; init; }

    public static string StreamId(string model, string region) => $"pool:{model}:{region}";

    public static string StreamId(string model, string region, ServingPhase phase) =>
        phase == ServingPhase.Whole ? StreamId(model, region) : $"pool:{model}:{region}:{PhasePools.NameOf(phase)}";

    public static CapacityPool Create(PoolOpened e) => new(e.PoolId, e.Model, e.Region, 0, 0, 0) { Phase = e.Phase };

    public CapacityPool Apply(CapacityAdded e) => this with { Capacity = Capacity + e.Ptu };

    public CapacityPool Apply(CapacityRemoved e) => this with { Capacity = Capacity - e.Ptu };

    public CapacityPool Apply(PtusAllocated e) => this with { Sold = Sold + e.Ptu };

    public CapacityPool Apply(PtusFreed e) => this with { Sold = Sold - e.Ptu };

    public CapacityPool Apply(PoolSizedFromGpus e) => this with { Gpus = new GpuSizing(e.GpuKind, e.Gpus, e.PtuPerGpu) };

    public CapacityPool Apply(PoolSizedInPtus e) => this with { Gpus = null };

    /// <summary>The state after one more event of the pool's stream, for folds outside Marten's snapshot (which calls Create and Apply itself).</summary>
    public CapacityPool Then(PoolEvent @event) => @event switch
    {
        PoolOpened e => Create(e),
        CapacityAdded e => Apply(e),
        CapacityRemoved e => Apply(e),
        PtusAllocated e => Apply(e),
        PtusFreed e => Apply(e),
        PoolSizedFromGpus e => Apply(e),
        PoolSizedInPtus e => Apply(e),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an event of a pool's stream"),
    };
}

/// <summary>Pool decisions; allocation and freeing are called by the deployment slices that buy and give back PTUs.</summary>
public static class PoolDecisions
{
    /// <summary>Operators state the capacity they have in PTUs; the difference becomes an add or a remove.</summary>
    public static PoolEvent[] SetCapacity(CapacityPool? pool, string model, string region, decimal capacity, DateTimeOffset now, ServingPhase phase = ServingPhase.Whole)
    {
        var events = Resize(pool, model, region, phase, capacity, now);
        if (pool?.Gpus is not null) events.Add(new PoolSizedInPtus(CapacityPool.StreamId(model, region, phase), now));
        return [.. events];
    }

    /// <summary>
    /// Operators state the GPUs they have; the capacity is that many times the PTUs per GPU the kind's calibration for the
    /// model gave (what one GPU running the Flywheel scheduler serves in full). Stating the same GPUs again changes nothing.
    /// </summary>
    public static PoolEvent[] SetGpus(CapacityPool? pool, string model, string region, GpuCalibration calibration, int gpus, DateTimeOffset now, ServingPhase phase = ServingPhase.Whole)
    {
        if (calibration.Model != model)
            throw RuleViolation.Unprocessable($"The calibration of {calibration.GpuKind} is for {calibration.Model}, not {model}.");
        var events = Resize(pool, model, region, phase, gpus * calibration.PtuPerGpu, now);
        var sizing = new GpuSizing(calibration.GpuKind, gpus, calibration.PtuPerGpu);
        if (pool?.Gpus != sizing) events.Add(new PoolSizedFromGpus(CapacityPool.StreamId(model, region, phase), sizing.GpuKind, gpus, sizing.PtuPerGpu, now));
        return [.. events];
    }

    static List<PoolEvent> Resize(CapacityPool? pool, string model, string region, ServingPhase phase, decimal capacity, DateTimeOffset now)
    {
        var id = CapacityPool.StreamId(model, region, phase);
        var current = pool?.Capacity ?? 0;
        if (capacity < (pool?.Sold ?? 0))
            throw RuleViolation.Conflict($"Pool {id} has {pool!.Sold} PTU sold; capacity cannot go below that.");
        List<PoolEvent> events = [];
        if (pool is null) events.Add(new PoolOpened(id, model, region, now, phase));
        if (capacity > current) events.Add(new CapacityAdded(id, capacity - current, now));
        if (capacity < current) events.Add(new CapacityRemoved(id, current - capacity, now));
        return events;
    }

    public static PoolEvent[] Allocate(CapacityPool? pool, string model, string region, string deploymentId, decimal ptu, DateTimeOffset now)
    {
        if (pool is null)
            throw RuleViolation.Conflict($"No capacity is registered for {model} in {region}.");
        if (ptu > pool.Free)
            throw RuleViolation.Conflict($"Pool {pool.Id} is exhausted: {pool.Free} PTU free, {ptu} PTU requested.");
        return [new PtusAllocated(pool.Id, deploymentId, ptu, now)];
    }

    public static PoolEvent[] Free(CapacityPool pool, string deploymentId, decimal ptu, DateTimeOffset now) =>
        [new PtusFreed(pool.Id, deploymentId, ptu, now)];
}
