using Throughput.Admission;

namespace Throughput.Tests.Domain;

/// <summary>Dividing one deployment's rate (60,000 weighted tokens a minute, a burst of 60,000) among the replicas that renew leases on it.</summary>
public sealed class LeaseAllocationSpecs
{
    const long Rate = 60_000;
    const long Burst = 60_000;
    static readonly TimeSpan Ttl = TimeSpan.FromMilliseconds(1500);
    static readonly DateTimeOffset T0 = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);

    static (DeploymentLeases Leases, ReplicaShare Granted, IReadOnlyList<ReplicaShare> Grown) Renew(DeploymentLeases leases, string replica, long demand, DateTimeOffset at) =>
        LeaseAllocation.Renew(leases, replica, demand, Rate, Burst, at, Ttl);

    /// <summary>Every replica renews in turn, as many rounds as asked, 250 ms apart; the leases after the last round.</summary>
    static DeploymentLeases Rounds(DeploymentLeases leases, IReadOnlyDictionary<string, long> demands, int rounds, DateTimeOffset from)
    {
        for (var round = 0; round < rounds; round++)
            foreach (var (replica, demand) in demands)
                leases = Renew(leases, replica, demand, from.AddMilliseconds(250 * round)).Leases;
        return leases;
    }

    static long Share(DeploymentLeases leases, string replica) => leases.Replicas[replica].TokensPerMinute;

    [Fact]
    public void Max_min_fair_meets_the_small_demands_in_full_and_splits_the_rest_evenly()
    {
        var shares = LeaseAllocation.FairShares([("a", 5_000), ("b", 40_000), ("c", 90_000)], Rate);

        Assert.Equal(5_000, shares["a"]);
        Assert.Equal(27_500, shares["b"]);
        Assert.Equal(27_500, shares["c"]);
    }

    [Fact]
    public void What_nobody_asks_for_is_split_evenly_so_shares_always_sum_to_the_rate()
    {
        var shares = LeaseAllocation.FairShares([("a", 10_000), ("b", 20_000), ("c", 0)], 60_001);

        Assert.Equal(60_001, shares.Values.Sum());
        Assert.Equal((20_001L, 30_000L, 10_000L), (shares["a"], shares["b"], shares["c"]));
    }

    [Fact]
    public void A_lone_replica_gets_the_whole_rate_and_burst()
    {
        var (_, granted, _) = Renew(DeploymentLeases.None, "a", 1_000, T0);

        Assert.Equal(Rate, granted.TokensPerMinute);
        Assert.Equal(Burst, granted.BurstTokens);
    }

    [Theory]
    [InlineData(144_000, 36_000, 30_000, 30_000)] // backlogged 80/20 at 3× the rate: both above their fair share, half each
    [InlineData(100_000, 6_000, 54_000, 6_000)] // one below its fair share: what it asks, the rest to the other
    [InlineData(20_000, 10_000, 35_000, 25_000)] // both below: what they ask plus half of what nobody asks for
    public void Two_replicas_share_max_min_fair_by_demand(long demandA, long demandB, long shareA, long shareB)
    {
        var leases = Rounds(DeploymentLeases.None, new Dictionary<string, long> { ["a"] = demandA, ["b"] = demandB }, rounds: 3, T0);

        Assert.Equal((shareA, shareB), (Share(leases, "a"), Share(leases, "b")));
        Assert.Equal(Burst * shareA / Rate, leases.Replicas["a"].BurstTokens);
    }

    [Fact]
    public void A_new_replica_gets_its_share_once_the_holder_has_given_it_up_and_never_before()
    {
        var (leases, first, _) = Renew(DeploymentLeases.None, "a", 200_000, T0);
        Assert.Equal(Rate, first.TokensPerMinute);

        (leases, var joining, _) = Renew(leases, "b", 200_000, T0.AddMilliseconds(100));
        Assert.Equal(0, joining.TokensPerMinute); // a still holds the whole rate until it renews
        Assert.Equal(2, leases.Replicas.Count);

        (leases, var shrunk, var grown) = Renew(leases, "a", 200_000, T0.AddMilliseconds(250));
        Assert.Equal(30_000, shrunk.TokensPerMinute);
        // What a gave up goes to b at once, to be pushed: b need not wait for its own renewal.
        Assert.Equal(("b", 30_000L, 30_000L), (Assert.Single(grown).ReplicaId, grown[0].TokensPerMinute, grown[0].BurstTokens));
        (leases, joining, _) = Renew(leases, "b", 200_000, T0.AddMilliseconds(350));
        Assert.Equal(30_000, joining.TokensPerMinute);
        Assert.Equal(30_000, joining.BurstTokens);
    }

    [Fact]
    public void Unused_share_moves_to_the_replica_that_wants_it_within_two_renewals()
    {
        var demands = new Dictionary<string, long> { ["a"] = 200_000, ["b"] = 200_000 };
        var leases = Rounds(DeploymentLeases.None, demands, rounds: 3, T0);
        Assert.Equal(30_000, Share(leases, "b"));

        demands["b"] = 3_000; // b's load went elsewhere
        leases = Rounds(leases, demands, rounds: 2, T0.AddSeconds(1));

        Assert.Equal(3_000, Share(leases, "b"));
        Assert.Equal(57_000, Share(leases, "a"));
    }

    [Fact]
    public void A_replica_that_stops_renewing_loses_its_lease_after_the_ttl_and_the_others_take_its_share()
    {
        var leases = Rounds(DeploymentLeases.None, new Dictionary<string, long> { ["a"] = 200_000, ["b"] = 200_000, ["c"] = 200_000 }, rounds: 3, T0);
        var lastOfC = leases.Replicas["c"].RenewedAt;

        leases = Rounds(leases, new Dictionary<string, long> { ["a"] = 200_000, ["b"] = 200_000 }, rounds: 2, lastOfC + Ttl - TimeSpan.FromMilliseconds(300));
        Assert.True(leases.Replicas.ContainsKey("c")); // not yet past its TTL
        leases = Rounds(leases, new Dictionary<string, long> { ["a"] = 200_000, ["b"] = 200_000 }, rounds: 2, lastOfC + Ttl);

        Assert.False(leases.Replicas.ContainsKey("c"));
        Assert.Equal(30_000, Share(leases, "a"));
        Assert.Equal(30_000, Share(leases, "b"));
    }

    [Fact]
    public void A_released_lease_goes_at_once_to_the_replicas_that_want_it()
    {
        var leases = Rounds(DeploymentLeases.None, new Dictionary<string, long> { ["a"] = 200_000, ["b"] = 200_000 }, rounds: 3, T0);

        var (released, grown) = LeaseAllocation.Release(leases, "b", Rate, Burst, T0.AddSeconds(1), Ttl);

        Assert.Equal(("a", Rate, Burst), (Assert.Single(grown).ReplicaId, grown[0].TokensPerMinute, grown[0].BurstTokens));
        Assert.Equal(["a"], released.Replicas.Keys);
    }

    [Fact]
    public void An_expired_lease_goes_to_the_replicas_below_their_target_at_the_next_renewal_of_any()
    {
        var leases = Rounds(DeploymentLeases.None, new Dictionary<string, long> { ["a"] = 200_000, ["b"] = 200_000, ["c"] = 200_000 }, rounds: 3, T0);

        var (after, granted, grown) = Renew(leases, "a", 200_000, T0.AddSeconds(2.1)); // b and c last renewed at T0 + 500 ms

        Assert.Equal(Rate, granted.TokensPerMinute);
        Assert.Empty(grown);
        Assert.Equal(["a"], after.Replicas.Keys);
    }

    [Fact]
    public void Leases_held_never_sum_to_more_than_the_rate_or_the_burst_whatever_the_order_of_renewals_and_releases()
    {
        var random = new Random(17);
        var leases = DeploymentLeases.None;
        var at = T0;
        for (var i = 0; i < 5_000; i++)
        {
            at = at.AddMilliseconds(random.Next(0, 120));
            leases = random.Next(0, 50) == 0
                ? LeaseAllocation.Release(leases, $"r{random.Next(8)}", Rate, Burst, at, Ttl).Leases
                : Renew(leases, $"r{random.Next(8)}", random.Next(0, 4) == 0 ? random.Next(0, 5_000) : random.Next(0, 200_000), at).Leases;
            Assert.InRange(leases.HeldTokensPerMinute, 0, Rate);
            Assert.InRange(leases.HeldBurstTokens, 0, Burst);
        }
    }

    [Fact]
    public void A_resize_down_grants_nothing_beyond_the_new_rate_until_the_others_have_shrunk()
    {
        var leases = Rounds(DeploymentLeases.None, new Dictionary<string, long> { ["a"] = 200_000, ["b"] = 200_000 }, rounds: 3, T0);

        var (after, granted, _) = LeaseAllocation.Renew(leases, "a", 200_000, 30_000, 30_000, T0.AddSeconds(1), Ttl);

        Assert.Equal(0, granted.TokensPerMinute); // b still holds 30,000 of the new 30,000
        var (_, b, _) = LeaseAllocation.Renew(after, "b", 200_000, 30_000, 30_000, T0.AddSeconds(1.1), Ttl);
        Assert.Equal(15_000, b.TokensPerMinute);
    }

    [Fact]
    public void Versions_grow_with_every_lease_and_across_a_restart_of_the_owner()
    {
        var (leases, _, _) = Renew(DeploymentLeases.None, "a", 1_000, T0);
        (leases, _, _) = Renew(leases, "a", 1_000, T0);
        var beforeRestart = leases.Version;

        var (afterRestart, _, _) = Renew(DeploymentLeases.None, "a", 1_000, T0.AddMilliseconds(10));

        Assert.Equal(T0.ToUnixTimeMilliseconds() + 1, beforeRestart);
        Assert.True(afterRestart.Version > beforeRestart);
    }

    [Fact]
    public void A_new_owner_grows_no_share_past_what_its_holder_holds_and_grants_none_to_a_replica_holding_none_until_one_ttl_has_passed()
    {
        // The old owner handed out 40,000 to a and 20,000 to b; the new owner's table is empty and c has just started.
        var held = new Dictionary<string, HeldShare> { ["a"] = new(40_000, 40_000, 7), ["b"] = new(20_000, 20_000, 7), ["c"] = new(0, 0, 0) };
        var leases = DeploymentLeases.None;
        var at = T0;
        foreach (var replica in new[] { "c", "a", "c", "b", "a", "c" })
        {
            at = at.AddMilliseconds(100);
            (leases, var granted, var grown) = LeaseAllocation.Renew(leases, replica, 1_000_000, Rate, Burst, at, Ttl, held[replica], takingOver: true);
            held[replica] = new HeldShare(granted.TokensPerMinute, granted.BurstTokens, leases.Version);

            Assert.Empty(grown);
            Assert.InRange(held.Values.Sum(h => h.TokensPerMinute), 0, Rate); // what every replica holds, renewed here or not
            Assert.InRange(held.Values.Sum(h => h.BurstTokens), 0, Burst);
        }
        Assert.Equal((0L, 0L), (held["c"].TokensPerMinute, held["c"].BurstTokens));
        Assert.Equal(20_000, held["a"].TokensPerMinute); // shrunk to its fair share: always safe

        // Past its first TTL the owner grows shares again (every lease of the old owner is known here or expired): c gets what a gave up.
        var (_, c, _) = LeaseAllocation.Renew(leases, "c", 1_000_000, Rate, Burst, at.AddMilliseconds(100), Ttl, held["c"]);
        Assert.Equal(20_000, c.TokensPerMinute);
    }

    [Fact]
    public void A_lease_is_versioned_above_the_one_its_holder_holds_even_from_an_owner_whose_clock_runs_ahead()
    {
        var ahead = T0.AddMinutes(5).ToUnixTimeMilliseconds();

        var (leases, _, _) = LeaseAllocation.Renew(DeploymentLeases.None, "a", 1_000, Rate, Burst, T0, Ttl, new HeldShare(60_000, 60_000, ahead));

        Assert.Equal(ahead + 1, leases.Version);
    }
}
