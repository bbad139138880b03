using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Tests.Serving;

public sealed class AdmissionCacheTests
{
    internal const string Deployment = "dep-1";

    readonly ManualClock _clock = new();

    // 60,000 weighted tokens a minute is 1,000 a second; the burst is one minute.
    internal static AdmissionLimitChanged Limit(long version = 1, AdmissionState state = AdmissionState.Open, long tokensPerMinute = 60_000,
        long burstTokens = 60_000, decimal utilization = 0, long retryAfterMs = 0, bool spillover = false) =>
        new(Deployment, "tenant-1", "gpt-4o", "eastus", state, tokensPerMinute, burstTokens, utilization, retryAfterMs, spillover,
            OutputWeight: 4, CachedDeduction: 1, version, DateTimeOffset.UnixEpoch);

    AdmissionCache Cache(double burstShare = 1, Action<AdmissionLimitChanged, LimitUpdate>? applied = null) =>
        new(new AdmissionCacheOptions { Clock = _clock, BurstShare = burstShare, LimitApplied = applied });

    [Fact]
    public void A_request_costs_its_uncached_prompt_plus_the_output_weight_times_its_max_output()
    {
        var cache = Cache();
        cache.Apply(Limit());

        var admission = cache.TryAdmit(Deployment, promptTokens: 1_000, cachedTokens: 300, maxOutputTokens: 200);

        Assert.Equal(AdmissionOutcome.Admitted, admission.Outcome);
        Assert.Equal(700 + 4 * 200, admission.EstimatedTokens);
        Assert.Equal(60_000 - 1_500, cache.Bucket(Deployment)!.Tokens);
    }

    [Fact]
    public void A_new_deployment_starts_with_its_burst_and_then_refills_at_its_rate_per_second()
    {
        var cache = Cache();
        cache.Apply(Limit());

        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 60_000, 0, 0).Outcome);
        var refused = cache.TryAdmit(Deployment, 500, 0, 0);
        Assert.Equal(AdmissionOutcome.OverRate, refused.Outcome);
        Assert.Equal(500, refused.RetryAfterMs);

        _clock.Advance(TimeSpan.FromMilliseconds(499));
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 500, 0, 0).Outcome);
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 500, 0, 0).Outcome);
    }

    [Fact]
    public void The_bucket_never_holds_more_than_its_capacity_however_long_it_was_idle()
    {
        var cache = Cache();
        cache.Apply(Limit());
        _clock.Advance(TimeSpan.FromHours(1));

        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 60_000, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
    }

    [Fact]
    public void Admitted_tokens_over_a_long_backlog_equal_the_burst_plus_the_rate_times_the_time()
    {
        var cache = Cache();
        cache.Apply(Limit());
        long admitted = 0;
        for (var ms = 0; ms < 120_000; ms += 7)
        {
            while (cache.TryAdmit(Deployment, 1_234, 0, 0) is { IsAdmitted: true } a) admitted += a.EstimatedTokens;
            _clock.Advance(TimeSpan.FromMilliseconds(7));
        }

        Assert.InRange(admitted, 60_000 + 120 * 1_000 - 1_234, 60_000 + 120 * 1_000);
    }

    [Fact]
    public void The_burst_share_keeps_the_local_bucket_under_the_platforms_depth()
    {
        var cache = Cache(burstShare: 0.9);
        cache.Apply(Limit());

        Assert.Equal(54_000, cache.Bucket(Deployment)!.Capacity);
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 54_000, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
    }

    [Fact]
    public void A_first_limit_with_metered_utilization_starts_the_bucket_with_only_the_platforms_headroom()
    {
        var cache = Cache(burstShare: 0.9);
        cache.Apply(Limit(utilization: 0.5m));

        Assert.Equal(54_000 - 30_000, cache.Bucket(Deployment)!.Tokens);
    }

    [Fact]
    public void Completing_a_request_gives_back_the_estimate_minus_the_actual_cost()
    {
        var cache = Cache();
        cache.Apply(Limit());
        var admission = cache.TryAdmit(Deployment, 1_000, 0, 1_000); // 5,000

        cache.Complete(admission, promptTokens: 1_000, cachedTokens: 0, outputTokens: 250); // actually 2,000

        Assert.Equal(60_000 - 2_000, cache.Bucket(Deployment)!.Tokens);
    }

    [Fact]
    public void A_request_that_cost_more_than_its_estimate_leaves_the_bucket_that_much_lower_and_a_refund_never_overfills_it()
    {
        var cache = Cache();
        cache.Apply(Limit());
        var small = cache.TryAdmit(Deployment, 1_000, 0, 0);
        cache.Complete(small, 3_000, 0, 0);
        Assert.Equal(60_000 - 3_000, cache.Bucket(Deployment)!.Tokens);

        _clock.Advance(TimeSpan.FromMinutes(5));
        var large = cache.TryAdmit(Deployment, 10_000, 0, 0);
        _clock.Advance(TimeSpan.FromSeconds(30));
        cache.Complete(large, 0, 0, 0);
        Assert.Equal(60_000, cache.Bucket(Deployment)!.Tokens);
    }

    [Fact]
    public void A_request_larger_than_the_bucket_goes_when_the_bucket_is_full_and_leaves_it_in_debt()
    {
        var cache = Cache();
        cache.Apply(Limit());

        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 90_000, 0, 0).Outcome);
        Assert.Equal(-30_000, cache.Bucket(Deployment)!.Tokens);
        var refused = cache.TryAdmit(Deployment, 90_000, 0, 0);
        Assert.Equal(90_000, refused.RetryAfterMs); // until the bucket is full again
    }

    [Fact]
    public void An_older_or_equal_version_is_ignored_and_a_newer_one_applies_at_once()
    {
        var seen = new List<(long, LimitUpdate)>();
        var cache = Cache(applied: (limit, update) => seen.Add((limit.Version, update)));

        cache.Apply(Limit(version: 3, tokensPerMinute: 60_000));
        cache.Apply(Limit(version: 2, tokensPerMinute: 1));
        cache.Apply(Limit(version: 3, tokensPerMinute: 1));
        cache.Apply(Limit(version: 4, tokensPerMinute: 120_000, burstTokens: 120_000));
        cache.Apply(Limit(version: 7, tokensPerMinute: 180_000, burstTokens: 180_000));
        cache.Apply(Limit(version: 5, tokensPerMinute: 1));

        Assert.Equal([(3, LimitUpdate.Applied), (2, LimitUpdate.Stale), (3, LimitUpdate.Stale), (4, LimitUpdate.Applied),
            (7, LimitUpdate.AppliedAfterGap), (5, LimitUpdate.Stale)], seen);
        Assert.Equal(7, cache.Limit(Deployment)!.Version);
        Assert.Equal(180_000, cache.Limit(Deployment)!.TokensPerMinute);
    }

    [Fact]
    public void A_resize_changes_the_rate_and_the_capacity_at_once_but_grants_no_new_burst()
    {
        var cache = Cache();
        cache.Apply(Limit());
        cache.TryAdmit(Deployment, 60_000, 0, 0);

        cache.Apply(Limit(version: 2, tokensPerMinute: 120_000, burstTokens: 120_000));

        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
        Assert.Equal(120_000, cache.Bucket(Deployment)!.Capacity);
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 2_000, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
    }

    [Fact]
    public void A_smaller_limit_caps_what_the_bucket_holds_at_its_new_capacity()
    {
        var cache = Cache();
        cache.Apply(Limit());

        cache.Apply(Limit(version: 2, tokensPerMinute: 6_000, burstTokens: 6_000));

        Assert.Equal(6_000, cache.Bucket(Deployment)!.Tokens);
    }

    [Fact]
    public void A_throttled_deployment_is_refused_for_the_platforms_retry_after_and_does_not_refill_meanwhile()
    {
        var cache = Cache();
        cache.Apply(Limit());
        cache.TryAdmit(Deployment, 30_000, 0, 0);

        cache.Apply(Limit(version: 2, state: AdmissionState.Throttled, utilization: 1.02m, retryAfterMs: 4_200));
        var refused = cache.TryAdmit(Deployment, 100, 0, 0);
        Assert.Equal(AdmissionOutcome.Throttled, refused.Outcome);
        Assert.Equal(4_200, refused.RetryAfterMs);
        _clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(1_000, cache.TryAdmit(Deployment, 100, 0, 0).RetryAfterMs); // past it: the lift is due

        cache.Apply(Limit(version: 3, utilization: 0.94m));
        Assert.Equal(-1_200, cache.Bucket(Deployment)!.Tokens, precision: 6); // the throttle's debt, not five seconds of refill
        _clock.Advance(TimeSpan.FromSeconds(4.2));
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 3_000, 0, 0).Outcome);
    }

    [Fact]
    public void A_throttle_neither_lifted_nor_confirmed_lapses_after_its_retry_after_and_the_deployment_refills_from_empty()
    {
        var cache = Cache();
        cache.Apply(Limit());
        cache.TryAdmit(Deployment, 30_000, 0, 0);
        cache.Apply(Limit(version: 2, state: AdmissionState.Throttled, utilization: 1.02m, retryAfterMs: 4_200));

        _clock.Advance(TimeSpan.FromSeconds(4.2 + 5) - TimeSpan.FromMilliseconds(1));
        var stillThrottled = cache.TryAdmit(Deployment, 100, 0, 0);
        Assert.Equal(AdmissionOutcome.Throttled, stillThrottled.Outcome);
        Assert.Equal(1, stillThrottled.RetryAfterMs); // no more than until it lapses

        _clock.Advance(TimeSpan.FromMilliseconds(1) + TimeSpan.FromSeconds(3));
        // Lapsed three seconds ago: the throttle's debt plus three seconds of rate, none of the time it was throttled.
        Assert.Equal(-1_200 + 3_000, cache.Bucket(Deployment)!.Tokens, precision: 6);
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 1_500, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(Deployment, 1_500, 0, 0).Outcome);
    }

    [Fact]
    public void A_throttle_the_platform_confirms_when_asked_again_holds_for_its_new_retry_after()
    {
        var cache = Cache();
        cache.Apply(Limit());
        cache.Apply(Limit(version: 2, state: AdmissionState.Throttled, utilization: 1.02m, retryAfterMs: 4_200));
        _clock.Advance(TimeSpan.FromSeconds(6));

        Assert.Equal(LimitUpdate.Stale, cache.Apply(Limit(version: 2, state: AdmissionState.Throttled, utilization: 0.99m, retryAfterMs: 3_000)));
        _clock.Advance(TimeSpan.FromSeconds(7.9)); // past the first throttle's lapse, not the confirmed one's (6 + 3 + 5 s)
        Assert.Equal(AdmissionOutcome.Throttled, cache.TryAdmit(Deployment, 100, 0, 0).Outcome);
        _clock.Advance(TimeSpan.FromSeconds(1.5)); // lapsed 1.4 s ago: 1,400 tokens of rate pay the 1,200 of debt
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 100, 0, 0).Outcome);
    }

    [Fact]
    public void A_lapsed_throttle_the_platform_confirms_once_it_is_back_refuses_again_and_a_lift_opens_it()
    {
        var cache = Cache();
        cache.Apply(Limit());
        cache.Apply(Limit(version: 2, state: AdmissionState.Throttled, utilization: 1.02m, retryAfterMs: 1_000));
        _clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 1_000, 0, 0).Outcome);

        cache.Apply(Limit(version: 2, state: AdmissionState.Throttled, utilization: 1.01m, retryAfterMs: 800));
        Assert.Equal(AdmissionOutcome.Throttled, cache.TryAdmit(Deployment, 100, 0, 0).Outcome);
        Assert.Equal(800, cache.TryAdmit(Deployment, 100, 0, 0).RetryAfterMs);

        cache.Apply(Limit(version: 3, utilization: 0.9m));
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(Deployment, 100, 0, 0).Outcome);
    }

    [Fact]
    public void With_spillover_a_throttled_or_exhausted_deployment_admits_as_spilled_without_touching_the_bucket()
    {
        var cache = Cache();
        cache.Apply(Limit(spillover: true));
        cache.TryAdmit(Deployment, 60_000, 0, 0);

        var overRate = cache.TryAdmit(Deployment, 1_000, 0, 0);
        cache.Complete(overRate, 1_000, 0, 0);
        Assert.Equal(AdmissionOutcome.Spilled, overRate.Outcome);
        Assert.True(overRate.IsAdmitted);
        Assert.Equal(0, cache.Bucket(Deployment)!.Tokens);

        cache.Apply(Limit(version: 2, state: AdmissionState.Throttled, utilization: 1m, retryAfterMs: 3_000, spillover: true));
        Assert.Equal(AdmissionOutcome.Spilled, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
    }

    [Theory]
    [InlineData(AdmissionState.Suspended, AdmissionOutcome.Suspended)]
    [InlineData(AdmissionState.Released, AdmissionOutcome.Released)]
    public void A_suspended_or_released_deployment_admits_nothing_even_with_spillover(AdmissionState state, AdmissionOutcome outcome)
    {
        var cache = Cache();
        cache.Apply(Limit());

        cache.Apply(Limit(version: 2, state: state, spillover: true));

        Assert.Equal(outcome, cache.TryAdmit(Deployment, 1, 0, 0).Outcome);
        Assert.False(cache.TryAdmit(Deployment, 1, 0, 0).IsAdmitted);
    }

    [Fact]
    public void An_unknown_deployment_is_refused()
    {
        var admission = Cache().TryAdmit("nobody", 1, 0, 0);

        Assert.Equal(AdmissionOutcome.UnknownDeployment, admission.Outcome);
        Assert.False(admission.IsAdmitted);
    }

    [Fact]
    public void Admission_decisions_are_in_process_and_allocate_nothing()
    {
        var cache = new AdmissionCache();
        var ids = Enumerable.Range(0, 64).Select(n => $"deployment-{n:D4}-{Guid.NewGuid():N}").ToArray();
        foreach (var id in ids) cache.Apply(Limit() with { DeploymentId = id, TokensPerMinute = long.MaxValue / 1_000_000, BurstTokens = long.MaxValue / 1_000_000 });
        const int Checks = 4_000_000;
        for (var i = 0; i < 100_000; i++) cache.TryAdmit(ids[i & 63], 100, 0, 10); // warm up

        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var admitted = 0;
        for (var i = 0; i < Checks; i++)
        {
            if (cache.TryAdmit(ids[i & 63], 100, 0, 10).IsAdmitted) admitted++;
        }
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;

        // Speed is a benchmark's business (bash infra/bench.sh admission-checks), not a unit test's.
        Assert.Equal(Checks, admitted);
        Assert.Equal(0, allocated);
    }
}

/// <summary>An adapter set's capped adapters at admission: each within its share, all of them within the set's rate.</summary>
public sealed class AdapterCapTests
{
    readonly ManualClock _clock = new();

    AdmissionCache CappedSet()
    {
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = _clock, BurstShare = 1 });
        cache.Apply(AdmissionCacheTests.Limit() with { AdapterCaps = new Dictionary<string, decimal> { ["support"] = 0.25m } });
        return cache;
    }

    [Fact]
    public void A_capped_adapter_gets_its_share_of_the_burst_and_then_its_share_of_the_rate_while_others_use_the_rest()
    {
        var cache = CappedSet();

        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(AdmissionCacheTests.Deployment, "support", 15_000, 0, 0).Outcome);
        var refused = cache.TryAdmit(AdmissionCacheTests.Deployment, "support", 500, 0, 0);
        Assert.Equal(AdmissionOutcome.OverRate, refused.Outcome);
        Assert.Equal(2_000, refused.RetryAfterMs); // a quarter of 1,000 tokens a second
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(AdmissionCacheTests.Deployment, "legal", 45_000, 0, 0).Outcome);

        _clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(AdmissionCacheTests.Deployment, "support", 500, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(AdmissionCacheTests.Deployment, "legal", 2_000, 0, 0).Outcome); // the set's bucket is spent
    }

    [Fact]
    public void A_capped_adapter_is_refused_when_the_set_is_spent_even_with_its_share_left()
    {
        var cache = CappedSet();
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(AdmissionCacheTests.Deployment, "legal", 60_000, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(AdmissionCacheTests.Deployment, "support", 100, 0, 0).Outcome);
    }

    [Fact]
    public void A_completed_request_gives_back_to_the_adapters_share_what_it_did_not_use()
    {
        var cache = CappedSet();
        var admission = cache.TryAdmit(AdmissionCacheTests.Deployment, "support", 15_000, 0, 0);
        cache.Complete(admission, 5_000, 0, 0);
        Assert.Equal(AdmissionOutcome.Admitted, cache.TryAdmit(AdmissionCacheTests.Deployment, "support", 10_000, 0, 0).Outcome);
        Assert.Equal(AdmissionOutcome.OverRate, cache.TryAdmit(AdmissionCacheTests.Deployment, "support", 100, 0, 0).Outcome);
    }
}
