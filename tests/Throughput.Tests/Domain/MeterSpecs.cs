using Throughput.Deployments;
using Throughput.Metering;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

/// <summary>The leaky bucket: 1 PTU of gpt-4o admits 2,500 weighted tokens per minute, a bucket of 2,500, draining 41.67 per second.</summary>
public sealed class MeterSpecs
{
    static MeteredRecord R(long prompt, long cached = 0, long output = 0, bool spilled = false) =>
        new("r", "dep-1", prompt, cached, output, spilled, 0, Now, Now, null);

    static ProducerBatch Batch(long sequence, params MeteredRecord[] records) => new("node", sequence, records);

    static MeterDecision Metered(Deployment d, DateTimeOffset now, params ProducerBatch[] batches) => Assert.IsType<MeterDecision>(Meter.Decide(d, batches, now));

    [Fact]
    public void Weighted_tokens_deduct_cached_prompt_tokens_and_weigh_output() =>
        Assert.Equal(1000 - 300 + 4 * 50, Meter.Weighted(ActiveDeployment(), R(1000, cached: 300, output: 50)));

    [Fact]
    public void Given_an_empty_bucket_when_usage_is_metered_then_one_UsageMetered_with_sums_and_the_level()
    {
        var (usage, transition) = Metered(ActiveDeployment(), Now, Batch(1, R(1000, 200, 10), R(500)), Batch(2, R(100, output: 25)));

        Assert.Null(transition);
        Assert.Equal((3L, 1600L, 200L, 35L), (usage.Tokens.Records, usage.Tokens.PromptTokens, usage.Tokens.CachedTokens, usage.Tokens.OutputTokens));
        Assert.Equal(800 + 40 + 500 + 100 + 100, usage.WeightedTokens);
        Assert.Equal(1540m, usage.BucketLevel);
        Assert.Equal(0.616m, usage.Utilization);
        Assert.Equal([new ProducerRange("node", 1, 2)], usage.Producers);
        Assert.Equal(ActiveDeployment().TenantId, usage.TenantId);
    }

    [Fact]
    public void The_meter_after_a_decision_is_the_applied_deployment_s_with_or_without_a_transition()
    {
        var throttled = Metered(ActiveDeployment(), Now, Batch(1, R(2600)));
        var d = throttled.Applied(ActiveDeployment());
        var lifted = Metered(d, Now.AddSeconds(30), Batch(2, R(10), R(300, 100, 20, spilled: true)));
        var plain = Metered(ActiveDeployment(), Now, Batch(3, R(1000, 200, 10)), Batch(4, R(5)), Batch(3, R(1000, 200, 10)));
        Assert.NotNull(throttled.Transition);
        Assert.NotNull(lifted.Transition);
        Assert.Null(plain.Transition);
        Assert.Equal(DeploymentMeter.Of(d, 0), throttled.MeterOf(ActiveDeployment()));
        Assert.Equal(DeploymentMeter.Of(lifted.Applied(d), 0), lifted.MeterOf(d));
        Assert.Equal(DeploymentMeter.Of(plain.Applied(ActiveDeployment()), 0), plain.MeterOf(ActiveDeployment()));
        Assert.Equal([new ProducerRange("node", 3, 4)], plain.Usage.Producers);
        Assert.Equal(2, plain.Usage.Tokens.Records); // batch 3 delivered twice counts once
    }

    [Fact]
    public void Given_usage_a_minute_ago_the_bucket_has_drained_at_the_purchased_rate()
    {
        var d = Metered(ActiveDeployment(), Now, Batch(1, R(2000))).Applied(ActiveDeployment());
        var usage = Metered(d, Now.AddSeconds(30), Batch(2, R(100))).Usage;
        Assert.Equal(2000 - 1250 + 100, usage.BucketLevel);
        Assert.Equal(0m, d.LevelAt(Now.AddMinutes(5)));
    }

    [Fact]
    public void Given_a_bucket_crossing_100_percent_then_throttled_with_the_time_to_drain_below_95()
    {
        var throttled = Assert.IsType<DeploymentThrottled>(Metered(ActiveDeployment(), Now, Batch(1, R(2600))).Transition);
        Assert.Equal(1.04m, throttled.Utilization);
        Assert.Equal(5400, throttled.RetryAfterMs); // (2,600 − 2,375) ÷ 41.67/s
    }

    [Fact]
    public void Given_a_throttled_deployment_when_more_usage_keeps_it_above_95_then_no_release_and_no_second_throttle()
    {
        var d = Metered(ActiveDeployment(), Now, Batch(1, R(2600))).Applied(ActiveDeployment());
        Assert.True(d.Throttled);
        Assert.Null(Metered(d, Now.AddSeconds(1), Batch(2, R(10))).Transition);
    }

    [Fact]
    public void Given_a_throttled_deployment_when_usage_arrives_after_draining_below_95_then_ThrottleLifted()
    {
        var d = Metered(ActiveDeployment(), Now, Batch(1, R(2600))).Applied(ActiveDeployment());
        var decision = Metered(d, Now.AddSeconds(30), Batch(2, R(10)));
        Assert.IsType<ThrottleLifted>(decision.Transition);
        Assert.False(decision.Applied(d).Throttled);
    }

    [Fact]
    public void An_idle_throttled_deployment_is_lifted_only_once_drained()
    {
        var d = Metered(ActiveDeployment(), Now, Batch(1, R(2600))).Applied(ActiveDeployment());
        Assert.Null(Meter.LiftIfDrained(d, Now.AddSeconds(5)));
        var lifted = Assert.IsType<ThrottleLifted>(Meter.LiftIfDrained(d, Now.AddSeconds(5.5)));
        Assert.True(lifted.Utilization < Deployment.ReleaseThreshold);
        Assert.Null(Meter.LiftIfDrained(ActiveDeployment(), Now));
    }

    [Fact]
    public void Spilled_records_are_counted_apart_and_do_not_fill_the_bucket()
    {
        var usage = Metered(ActiveDeployment(), Now, Batch(1, R(3000, 1000, 100, spilled: true), R(100))).Usage;
        Assert.Equal((1L, 3000L, 1000L, 100L), (usage.Tokens.SpilledRecords, usage.Tokens.SpilledPromptTokens, usage.Tokens.SpilledCachedTokens, usage.Tokens.SpilledOutputTokens));
        Assert.Equal(100m, usage.BucketLevel);
        Assert.Equal(2400m + 100m, usage.WeightedTokens);
    }

    [Fact]
    public void The_same_batch_twice_in_one_consumer_batch_counts_once() =>
        Assert.Equal(1, Metered(ActiveDeployment(), Now, Batch(7, R(1)), Batch(7, R(1))).Usage.Tokens.Records);

    [Fact]
    public void A_resize_settles_the_bucket_at_the_old_rate_then_drains_at_the_new_one()
    {
        var d = Metered(ActiveDeployment(), Now, Batch(1, R(2000))).Applied(ActiveDeployment());
        var resized = d.Apply(new DeploymentResized("dep-1", 1, 2, Now.AddSeconds(12)));
        Assert.Equal(1500m, resized.LevelAt(Now.AddSeconds(12)));
        Assert.Equal(1500m - 5000m / 60 * 6, resized.LevelAt(Now.AddSeconds(18)));
        Assert.Equal(new AdmissionLimit(5000, 5000), resized.Limit);
    }

    [Fact]
    public void Given_a_released_deployment_when_late_usage_is_metered_then_it_is_counted_and_nothing_is_throttled()
    {
        var released = ActiveDeployment().Apply(new DeploymentReleased("dep-1", 1, Now));

        var (usage, transition) = Metered(released, Now.AddSeconds(1), Batch(1, R(100_000)));

        Assert.Equal(100_000, usage.Tokens.PromptTokens);
        Assert.Null(transition);
    }

    [Fact]
    public void Usage_that_finished_before_the_release_is_served_and_after_it_is_not()
    {
        var released = ActiveDeployment().Apply(new DeploymentReleased("dep-1", 1, Now));
        Assert.True(ActiveDeployment().Served(Now.AddYears(1)));
        Assert.True(released.Served(Now));
        Assert.False(released.Served(Now.AddTicks(1)));
    }

    [Fact]
    public void A_spilled_record_is_billable_while_spillover_is_on_or_when_it_finished_before_spillover_was_turned_off()
    {
        var on = ActiveDeployment().Apply(new SpilloverEnabled("dep-1", Now));
        var off = on.Apply(new SpilloverDisabled("dep-1", Now.AddMinutes(1)));
        Assert.False(ActiveDeployment().MaySpill(Now));
        Assert.True(on.MaySpill(Now.AddYears(1)));
        Assert.True(off.MaySpill(Now.AddMinutes(1)));
        Assert.False(off.MaySpill(Now.AddMinutes(1).AddTicks(1)));
    }

    [Fact]
    public void A_claims_content_hash_is_stable_and_changes_with_any_field_or_the_order()
    {
        MeteredRecord Rec(string id, long prompt = 10) => new(id, "dep-1", prompt, 0, 1, false, 0, Now, Now, null);
        var hash = AppliedBatches.ContentHash([Rec("a"), Rec("b")]);

        Assert.Equal(hash, AppliedBatches.ContentHash([Rec("a"), Rec("b")]));
        Assert.Equal(182_751_201_465_756_998, AppliedBatches.ContentHash([Rec("a")])); // stored in the ledger: never changes between versions
        Assert.NotEqual(hash, AppliedBatches.ContentHash([Rec("b"), Rec("a")]));
        Assert.NotEqual(hash, AppliedBatches.ContentHash([Rec("a"), Rec("b", prompt: 11)]));
        Assert.NotEqual(AppliedBatches.ContentHash([Rec("ab"), Rec("c")]), AppliedBatches.ContentHash([Rec("a"), Rec("bc")]));
        Assert.NotEqual(hash, AppliedBatches.ContentHash([Rec("a"), Rec("b") with { Spilled = true }]));
    }
    [Fact]
    public void A_claim_taken_before_is_judged_per_message_so_a_verbatim_and_a_conflicting_repeat_in_one_batch_are_told_apart()
    {
        var counted = new AppliedBatches.Claim(Fresh: false, CountedHash: 42);

        Assert.False(counted.Conflicts(42)); // the verbatim repeat: a silent duplicate
        Assert.True(counted.Conflicts(43)); // the other records, whichever of the two came first in the batch
        Assert.False(new AppliedBatches.Claim(Fresh: true, CountedHash: null).Conflicts(43));
        Assert.False(new AppliedBatches.Claim(Fresh: false, CountedHash: null).Conflicts(43)); // claims from before hashes were kept
    }

    [Fact]
    public void A_meter_folded_from_the_usage_log_is_the_meter_metering_wrote()
    {
        // What a partition rebuilds after a restart (the stored meter, then the usage events after its checkpoint) must be
        // what it would have written had it written every batch.
        var start = ActiveDeployment();
        var first = Metered(start, Now, Batch(1, R(1000, 200, 10), R(500, spilled: true)));
        var afterFirst = first.Applied(start);
        var second = Metered(afterFirst, Now.AddSeconds(20), Batch(2, R(100, output: 25)));

        var folded = DeploymentMeter.Of(start, 0).Then(first.Usage).Then(second.Usage);

        Assert.Equal(DeploymentMeter.Of(second.Applied(afterFirst), 0), folded);
    }
}
