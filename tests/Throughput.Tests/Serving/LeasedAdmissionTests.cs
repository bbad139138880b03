using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Tests.Serving;

/// <summary>A serving node that takes leases admits within its share of the deployment, never the whole of it.</summary>
public sealed class LeasedAdmissionTests
{
    const string Deployment = AdmissionCacheTests.Deployment;

    readonly ManualClock _clock = new();

    static AdmissionLease Lease(long version, long tokensPerMinute, long burstTokens, int replicas) =>
        new(Deployment, "node-a", tokensPerMinute, burstTokens, tokensPerMinute, replicas, version, DateTimeOffset.UnixEpoch.AddSeconds(2));

    /// <summary>A leased cache following the deployment's 60,000-a-minute limit, given these leases in turn.</summary>
    AdmissionCache Cache(params AdmissionLease[] leases)
    {
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = _clock, BurstShare = 1, Leases = true });
        cache.Apply(AdmissionCacheTests.Limit());
        foreach (var lease in leases) cache.Apply(lease);
        return cache;
    }

    [Fact]
    public void Before_its_first_lease_a_node_admits_nothing_and_asks_again_at_about_the_next_renewal()
    {
        var cache = Cache();

        var refused = cache.TryAdmit(Deployment, 1, 0, 0);

        Assert.Equal(AdmissionOutcome.OverRate, refused.Outcome);
        Assert.Equal(250, refused.RetryAfterMs);
    }

    [Fact]
    public void A_node_alone_on_the_deployment_opens_with_its_burst_and_refills_at_its_share()
    {
        var cache = Cache(Lease(1, 60_000, 60_000, replicas: 1));

        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 60_000, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
    }

    [Fact]
    public void A_node_joining_others_starts_empty_so_the_opening_burst_is_one_burst_in_all()
    {
        var cache = Cache(Lease(1, 30_000, 30_000, replicas: 2));

        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 500, 0, 0).Outcome); // half the rate: 500 a second
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
    }

    [Fact]
    public void A_smaller_lease_cuts_the_tokens_held_and_a_larger_one_grants_rate_not_tokens()
    {
        var cache = Cache(Lease(1, 60_000, 60_000, replicas: 1));
        cache.Apply(Lease(2, 15_000, 15_000, replicas: 2));
        Assert.Equal(15_000, cache.Bucket(Deployment)!.Tokens);

        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 15_000, 0, 0).Outcome);
        cache.Apply(Lease(3, 45_000, 45_000, replicas: 2));
        Assert.Equal(0, cache.Bucket(Deployment)!.Tokens);
        _clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(1_500, cache.Bucket(Deployment)!.Tokens, 6); // 45,000 a minute
    }

    [Fact]
    public void An_older_lease_is_ignored()
    {
        var cache = Cache(Lease(5, 30_000, 30_000, replicas: 2));

        Assert.False(cache.Apply(Lease(4, 60_000, 60_000, replicas: 1)));
        Assert.Equal(30_000, cache.Lease(Deployment)!.TokensPerMinute);
    }

    [Fact]
    public void A_lease_never_admits_beyond_the_limit_a_resize_cut_before_the_next_renewal()
    {
        var cache = Cache(Lease(1, 60_000, 60_000, replicas: 1));
        cache.Apply(AdmissionCacheTests.Limit(version: 2, tokensPerMinute: 6_000, burstTokens: 6_000));

        Assert.Equal(6_000, cache.Bucket(Deployment)!.Capacity);
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 6_000, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
    }

    [Fact]
    public void Every_request_decided_on_counts_as_demand_admitted_or_not()
    {
        var cache = Cache(Lease(1, 60_000, 1_000, replicas: 2));
        _clock.Advance(TimeSpan.FromSeconds(1));

        cache.TryAdmit(Deployment, 800, 0, 0);
        cache.TryAdmit(Deployment, 800, 0, 0);

        var bucket = cache.Buckets.Single().Value;
        Assert.Equal((1_600, 800, 1), bucket.TakeDemand()); // the second found the bucket short
        Assert.Equal((0, 0, 0), bucket.TakeDemand());
    }

    [Fact]
    public void A_node_without_leases_follows_the_whole_limit_as_before()
    {
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = _clock, BurstShare = 1 });
        cache.Apply(AdmissionCacheTests.Limit());

        Assert.False(cache.Apply(Lease(1, 1_000, 1_000, replicas: 2)));
        Assert.Equal(60_000, cache.Bucket(Deployment)!.Capacity);
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 60_000, 0, 0).Outcome);
    }
}
