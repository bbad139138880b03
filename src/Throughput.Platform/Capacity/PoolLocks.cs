using Marten;
using JasperFx.Events;

namespace Throughput.Capacity;

/// <summary>The pools a decision reads and writes, locked for it.</summary>
public static class PoolLocks
{
    /// <summary>
    /// Row locks on the pools of a model in these regions (whole, prompt and generation), taken in the order of their ids:
    /// two writers locking overlapping sets wait for each other instead of deadlocking, and neither can oversell a pool the
    /// other reads.
    /// </summary>
    public static async Task<IReadOnlyList<IEventStream<CapacityPool>>> LockAsync(IDocumentSession session, string model, IEnumerable<string> regions, CancellationToken ct)
    {
        var streams = new List<IEventStream<CapacityPool>>();
        foreach (var id in regions.SelectMany(r => PhasePools.StreamIds(model, r)).Distinct().Order(StringComparer.Ordinal))
            streams.Add(await session.Events.FetchForExclusiveWriting<CapacityPool>(id, ct));
        return streams;
    }

    /// <summary>The locked pools that exist, one per region: a split region's phases joined (<see cref="PhasePools.ByRegion"/>).</summary>
    public static IReadOnlyList<CapacityPool> Pools(this IReadOnlyList<IEventStream<CapacityPool>> streams) =>
        PhasePools.ByRegion(streams.Select(s => s.Aggregate).OfType<CapacityPool>());

    /// <summary>Appends each event to its pool's stream; an event of a joined split region goes to both its phases.</summary>
    public static void Append(this IReadOnlyList<IEventStream<CapacityPool>> streams, IEnumerable<PoolEvent> events)
    {
        var joined = streams.Pools().Where(p => p.Phases is not null).ToDictionary(p => p.Id);
        foreach (var ofPool in events.SelectMany(e => joined.TryGetValue(e.PoolId, out var pool) ? PhasePools.ToPhases(e, pool) : [e]).GroupBy(e => e.PoolId))
            streams.Single(s => s.Key == ofPool.Key).AppendMany(ofPool.Cast<object>().ToArray());
    }
}
