namespace Throughput.Capacity;

/// <summary>Which part of requests GPUs serve: all of it, or one half on a phase-split (Splitwise) fleet.</summary>
public enum ServingPhase : byte
{
    Whole,
    Prompt,
    Generation,
}

/// <summary>
/// A region of a model is served whole (one pool) or split by phase (a prompt pool and a generation pool, each with GPUs
/// of its own kind). Decisions see a split region as one pool whose room is what both phases have free, because a
/// deployment there draws its PTUs from each: its rate may be spent all on prompts or all on output, so each phase must
/// hold all of it.
/// </summary>
public static class PhasePools
{
    public static readonly ServingPhase[] Split = [ServingPhase.Prompt, ServingPhase.Generation];

    public static string NameOf(ServingPhase phase) => phase switch
    {
        ServingPhase.Prompt => "prompt",
        ServingPhase.Generation => "generation",
        _ => "whole",
    };

    public static ServingPhase? Parse(string name) => name switch
    {
        "prompt" => ServingPhase.Prompt,
        "generation" => ServingPhase.Generation,
        _ => null,
    };

    /// <summary>The pool streams a region of a model may have: whole, prompt, generation.</summary>
    public static IEnumerable<string> StreamIds(string model, string region) =>
        [CapacityPool.StreamId(model, region), .. Split.Select(p => CapacityPool.StreamId(model, region, p))];

    /// <summary>In use: it has capacity or holds PTUs.</summary>
    static bool InUse(CapacityPool pool) => pool.Capacity > 0 || pool.Sold > 0;

    /// <summary>One pool per region as purchases and placement see it: the whole pool, or the split region's phases as one.</summary>
    public static IReadOnlyList<CapacityPool> ByRegion(IEnumerable<CapacityPool> pools) =>
        [.. pools.GroupBy(p => (p.Model, p.Region)).Select(region =>
        {
            var phases = region.Where(p => p.Phase != ServingPhase.Whole).ToList();
            var whole = region.SingleOrDefault(p => p.Phase == ServingPhase.Whole);
            return phases.Count == 0 || (whole is not null && !phases.Any(InUse)) ? whole! : Joined(region.Key.Model, region.Key.Region, phases);
        })];

    static CapacityPool Joined(string model, string region, IReadOnlyList<CapacityPool> phases)
    {
        var prompt = phases.SingleOrDefault(p => p.Phase == ServingPhase.Prompt);
        var generation = phases.SingleOrDefault(p => p.Phase == ServingPhase.Generation);
        var free = Math.Min(prompt?.Free ?? 0, generation?.Free ?? 0);
        var sold = Math.Max(prompt?.Sold ?? 0, generation?.Sold ?? 0);
        return new CapacityPool(CapacityPool.StreamId(model, region), model, region, sold + free, sold, 0) { Phases = phases };
    }

    /// <summary>A region is whole or split: an operator cannot give capacity to one kind while the other is in use.</summary>
    public static void EnsureOneKind(string model, string region, ServingPhase phase, decimal capacity, IEnumerable<CapacityPool> regionPools)
    {
        if (capacity == 0) return;
        var other = regionPools.FirstOrDefault(p => (p.Phase == ServingPhase.Whole) != (phase == ServingPhase.Whole) && InUse(p));
        if (other is not null)
            throw Http.RuleViolation.Conflict(phase == ServingPhase.Whole
                ? $"{model} in {region} is split by phase ({other.Id} is in use); set its prompt and generation pools instead."
                : $"{model} in {region} is served whole ({other.Id} is in use); a region is either whole or split by phase.");
    }

    /// <summary>
    /// A joined pool's allocations and frees go to both its phases: the same PTUs from each. Anything else is a pool's own.
    /// </summary>
    public static IEnumerable<PoolEvent> ToPhases(PoolEvent e, CapacityPool joined) => e switch
    {
        PtusAllocated or PtusFreed => joined.Phases!.Select(p => e with { PoolId = p.Id }),
        _ => throw new InvalidOperationException($"{e.GetType().Name} cannot go to the phases of {joined.Id} together"),
    };
}
