using Marten;
using JasperFx.Events;

namespace Throughput.Capacity;

/// <summary>The pools a decision reads and writes, locked for it.</summary>
public static class PoolLocks
{
    /// <summary>
    /// Row locks on the pools of a model in these regions, taken in the order of their ids: two writers locking
    /// overlapping sets wait for each other instead of deadlocking, and neither can oversell a pool the other reads.
    /// </summary>
    public static async Task<IReadOnlyList<IEventStream<CapacityPool>>> LockAsync(IDocumentSession session, string model, IEnumerable<string> regions, CancellationToken ct)
    {
        var streams = new List<IEventStream<CapacityPool>>();
        foreach (var id in regions.Select(r => CapacityPool.StreamId(model, r)).Distinct().Order(StringComparer.Ordinal))
            streams.Add(await session.Events.FetchForExclusiveWriting<CapacityPool>(id, ct));
        return streams;
    }

    /// <summary>The locked pools that exist.</summary>
    public static IReadOnlyList<CapacityPool> Pools(this IReadOnlyList<IEventStream<CapacityPool>> streams) =>
        [.. streams.Select(s => s.Aggregate).OfType<CapacityPool>()];

    public static void Append(this IReadOnlyList<IEventStream<CapacityPool>> streams, IEnumerable<PoolEvent> events)
    {
        foreach (var ofPool in events.GroupBy(e => e.PoolId))
            streams.Single(s => s.Key == ofPool.Key).AppendMany(ofPool.Cast<object>().ToArray());
    }
}
