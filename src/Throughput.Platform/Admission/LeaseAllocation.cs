using System.Collections.Immutable;

namespace Throughput.Admission;

/// <summary>One serving process's standing on a deployment: what it last asked for, the share it holds, when it last renewed.</summary>
public sealed record ReplicaShare(string ReplicaId, long Demand, long TokensPerMinute, long BurstTokens, DateTimeOffset RenewedAt);

/// <summary>The lease a replica says it holds when it renews (its share of rate and burst, and the lease's version); none if it did not say.</summary>
public sealed record HeldShare(long TokensPerMinute, long BurstTokens, long Version);

/// <summary>A deployment's leases: the replicas holding a share, and the version of the last lease handed out.</summary>
public sealed record DeploymentLeases(ImmutableSortedDictionary<string, ReplicaShare> Replicas, long Version)
{
    public static readonly DeploymentLeases None = new(ImmutableSortedDictionary.Create<string, ReplicaShare>(StringComparer.Ordinal), 0);

    public long HeldTokensPerMinute => Replicas.Values.Sum(r => r.TokensPerMinute);

    public long HeldBurstTokens => Replicas.Values.Sum(r => r.BurstTokens);
}

/// <summary>
/// Divides a deployment's rate and burst among the serving processes that renew a lease on it (as Doorman does): each
/// replica's target is its max-min fair share of the rate given everyone's demand, and the rate no one asks for is split
/// evenly, so a replica whose demand grows has room before its next report. A replica is granted its target only out of
/// what the others do not hold, so the shares held never sum to more than the purchase, not even between two renewals.
/// A share given up (or expired, or released) is handed on at once to the replicas below their target: growing a share
/// is safe before its holder hears of it, so those grants are pushed rather than waiting for the receivers' renewals.
/// Burst follows the rate share.
/// </summary>
public static class LeaseAllocation
{
    /// <summary>
    /// Max-min fair shares of <paramref name="capacity"/> (water-filling: the smallest demands are met in full, the rest
    /// split what is left evenly), then what nobody asked for split evenly. The shares sum to exactly the capacity.
    /// </summary>
    public static ImmutableSortedDictionary<string, long> FairShares(IReadOnlyCollection<(string ReplicaId, long Demand)> demands, long capacity)
    {
        var shares = ImmutableSortedDictionary.CreateBuilder<string, long>(StringComparer.Ordinal);
        if (demands.Count == 0) return shares.ToImmutable();
        var left = Math.Max(0, capacity);
        var waiting = demands.Count;
        foreach (var (replica, demand) in demands.OrderBy(d => d.Demand).ThenBy(d => d.ReplicaId, StringComparer.Ordinal))
        {
            var given = Math.Min(Math.Max(0, demand), left / waiting--);
            shares[replica] = given;
            left -= given;
        }
        var each = left / demands.Count;
        var extra = left % demands.Count;
        foreach (var replica in shares.Keys.ToList()) shares[replica] += each + (extra-- > 0 ? 1 : 0);
        return shares.ToImmutable();
    }

    /// <summary>
    /// A replica renews with its demand: leases past their TTL are dropped, the targets are recomputed, and the renewing
    /// replica is granted its target as far as the others' holdings leave room (the rest comes once they have given theirs
    /// up). What is then left free goes to the others below their target: <c>Grown</c>, the leases to push.
    /// <paramref name="takingOver"/>: the lease owner has just taken over and cannot know what its predecessor handed out
    /// to the replicas that have not renewed yet, so no share grows past what its holder says it holds (<paramref name="held"/>;
    /// nothing if it did not say) and nothing is handed out; shrinking is always safe.
    /// </summary>
    public static (DeploymentLeases Leases, ReplicaShare Granted, IReadOnlyList<ReplicaShare> Grown) Renew(DeploymentLeases leases, string replicaId,
        long demand, long rate, long burst, DateTimeOffset now, TimeSpan ttl, HeldShare? held = null, bool takingOver = false)
    {
        var live = Expire(leases, now, ttl).Replicas;
        var renewing = (live.GetValueOrDefault(replicaId) ?? new ReplicaShare(replicaId, 0, 0, 0, now)) with { Demand = Math.Max(0, demand), RenewedAt = now };
        live = live.SetItem(replicaId, renewing);
        var targets = FairShares([.. live.Values.Select(r => (r.ReplicaId, r.Demand))], rate);
        var granted = Grant(renewing, targets[replicaId], live.Values.Where(r => r.ReplicaId != replicaId).ToList(), rate, burst);
        // A version above the one the replica holds, even one handed out by another owner on another clock.
        var version = Math.Max(Math.Max(leases.Version + 1, now.ToUnixTimeMilliseconds()), (held?.Version ?? 0) + 1);
        if (takingOver)
        {
            granted = granted with
            {
                TokensPerMinute = Math.Min(granted.TokensPerMinute, Math.Max(0, held?.TokensPerMinute ?? 0)),
                BurstTokens = Math.Min(granted.BurstTokens, Math.Max(0, held?.BurstTokens ?? 0)),
            };
            return (new DeploymentLeases(live.SetItem(replicaId, granted), version), granted, []);
        }
        var (replicas, grown) = HandOutFree(live.SetItem(replicaId, granted), targets, rate, burst);
        return (new DeploymentLeases(replicas, version), granted, grown);
    }

    /// <summary>
    /// A replica stopping gives its share back at once instead of after the TTL; the others below their target take it now
    /// (unless the owner is <paramref name="takingOver"/>: the share may be needed for what its predecessor handed out).
    /// </summary>
    public static (DeploymentLeases Leases, IReadOnlyList<ReplicaShare> Grown) Release(DeploymentLeases leases, string replicaId, long rate, long burst,
        DateTimeOffset now, TimeSpan ttl, bool takingOver = false)
    {
        if (!leases.Replicas.ContainsKey(replicaId)) return (leases, []);
        var live = Expire(leases, now, ttl).Replicas.Remove(replicaId);
        var version = Math.Max(leases.Version + 1, now.ToUnixTimeMilliseconds());
        if (takingOver) return (new DeploymentLeases(live, version), []);
        var (replicas, grown) = HandOutFree(live, FairShares([.. live.Values.Select(r => (r.ReplicaId, r.Demand))], rate), rate, burst);
        return (new DeploymentLeases(replicas, version), grown);
    }

    /// <summary>The replica's share set to its target, as far as what the others hold leaves room; its burst follows.</summary>
    static ReplicaShare Grant(ReplicaShare replica, long target, IReadOnlyCollection<ReplicaShare> others, long rate, long burst)
    {
        var share = Math.Clamp(target, 0, Math.Max(0, rate - others.Sum(r => r.TokensPerMinute)));
        var burstShare = rate <= 0 ? 0 : Math.Clamp((long)((Int128)burst * share / rate), 0, Math.Max(0, burst - others.Sum(r => r.BurstTokens)));
        return replica with { TokensPerMinute = share, BurstTokens = burstShare };
    }

    /// <summary>Grows, largest shortfall first, every share below its target out of what nobody holds.</summary>
    static (ImmutableSortedDictionary<string, ReplicaShare> Replicas, IReadOnlyList<ReplicaShare> Grown) HandOutFree(
        ImmutableSortedDictionary<string, ReplicaShare> replicas, ImmutableSortedDictionary<string, long> targets, long rate, long burst)
    {
        var grown = new List<ReplicaShare>();
        foreach (var behind in replicas.Values.Where(r => r.TokensPerMinute < targets[r.ReplicaId])
                     .OrderByDescending(r => targets[r.ReplicaId] - r.TokensPerMinute).ThenBy(r => r.ReplicaId, StringComparer.Ordinal).ToList())
        {
            var given = Grant(behind, targets[behind.ReplicaId], [.. replicas.Values.Where(r => r.ReplicaId != behind.ReplicaId)], rate, burst);
            if (given.TokensPerMinute <= behind.TokensPerMinute) continue;
            replicas = replicas.SetItem(given.ReplicaId, given);
            grown.Add(given);
        }
        return (replicas, grown);
    }

    /// <summary>Drops the leases not renewed within the TTL: their shares are free for the others' next renewals.</summary>
    public static DeploymentLeases Expire(DeploymentLeases leases, DateTimeOffset now, TimeSpan ttl)
    {
        var expired = leases.Replicas.Values.Where(r => now - r.RenewedAt >= ttl).Select(r => r.ReplicaId).ToList();
        return expired.Count == 0 ? leases : leases with { Replicas = leases.Replicas.RemoveRange(expired) };
    }
}
