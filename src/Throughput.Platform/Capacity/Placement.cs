namespace Throughput.Capacity;

/// <summary>The PTUs of a deployment that one region's pool holds.</summary>
/// <param name="Region">The region whose pool holds the share.</param>
/// <param name="Ptu">The PTUs placed there.</param>
public sealed record PlacedPtu(string Region, decimal Ptu);

/// <summary>Where a deployment's PTUs go, what could not go anywhere, and the pools' events that take and give them back.</summary>
public sealed record Placed(IReadOnlyList<PlacedPtu> Shares, decimal UnplacedPtu, IReadOnlyList<PoolEvent> PoolEvents);

/// <summary>Forge's placement of Data Zone and Global deployments across the pools of their regions.</summary>
public static class Placement
{
    /// <summary>
    /// Places <paramref name="ptu"/> PTUs across <paramref name="pools"/>, counting what the deployment holds already as
    /// room of its own. What it holds stays where it still fits (no needless moves); the rest goes whole to one region when
    /// one has room — a region it is already in, then the preferred one, then the one with most room — and is split over the
    /// roomiest regions otherwise. A pool never takes more than it has free; what fits nowhere is unplaced.
    /// </summary>
    public static Placed Place(IReadOnlyList<CapacityPool> pools, IReadOnlyList<PlacedPtu> current, string preferredRegion, string deploymentId, decimal ptu, DateTimeOffset now)
    {
        var held = current.GroupBy(s => s.Region).ToDictionary(g => g.Key, g => g.Sum(s => s.Ptu));
        var room = pools.ToDictionary(p => p.Region, p => Math.Max(0, p.Free + held.GetValueOrDefault(p.Region)));
        var shares = new Dictionary<string, decimal>();
        var left = ptu;
        void Take(string region, decimal amount)
        {
            shares[region] = shares.GetValueOrDefault(region) + amount;
            room[region] -= amount;
            left -= amount;
        }
        foreach (var (region, amount) in held)
            if (Math.Min(Math.Min(amount, room.GetValueOrDefault(region)), left) is var keep and > 0) Take(region, keep);
        if (left > 0)
        {
            var byPreference = room.Where(r => r.Value > 0)
                .OrderByDescending(r => shares.ContainsKey(r.Key)).ThenByDescending(r => r.Key == preferredRegion)
                .ThenByDescending(r => r.Value).ThenBy(r => r.Key, StringComparer.Ordinal).ToList();
            if (byPreference.FirstOrDefault(r => r.Value >= left) is { Key: not null } whole) Take(whole.Key, left);
            else
                foreach (var (region, free) in byPreference.OrderByDescending(r => r.Value).ThenBy(r => r.Key, StringComparer.Ordinal))
                    if (left > 0) Take(region, Math.Min(free, left));
        }
        var poolEvents = new List<PoolEvent>();
        foreach (var pool in pools.OrderBy(p => p.Id, StringComparer.Ordinal))
        {
            var change = shares.GetValueOrDefault(pool.Region) - held.GetValueOrDefault(pool.Region);
            if (change > 0) poolEvents.Add(new PtusAllocated(pool.Id, deploymentId, change, now));
            if (change < 0) poolEvents.Add(new PtusFreed(pool.Id, deploymentId, -change, now));
        }
        return new Placed([.. shares.Where(s => s.Value > 0).OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => new PlacedPtu(s.Key, s.Value))],
            left, poolEvents);
    }
}
