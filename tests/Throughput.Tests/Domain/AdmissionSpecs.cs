using Throughput.Admission;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Tenants;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class AdmissionSpecs
{
    [Fact]
    public void An_active_deployment_is_open_at_its_purchased_rate_with_version_one()
    {
        var limit = AdmissionLimits.Of(ActiveDeployment(0.5m), ActiveTenant(), Now);
        Assert.Equal((AdmissionState.Open, 1250L, 1250L, 1L, 4m, 1m), (limit.State, limit.TokensPerMinute, limit.BurstTokens, limit.Version, limit.OutputWeight, limit.CachedDeduction));
    }

    [Fact]
    public void Every_admission_change_grows_the_version_by_one_whichever_stream_it_comes_from()
    {
        var d = ActiveDeployment();
        var t = ActiveTenant();
        var versions = new List<long> { AdmissionLimits.Of(d, t, Now).Version };
        d = d.Apply(new DeploymentResized("dep-1", 1, 2, Now)); versions.Add(AdmissionLimits.Of(d, t, Now).Version);
        d = d.Apply(new DeploymentThrottled("dep-1", 1.1m, 100, Now)); versions.Add(AdmissionLimits.Of(d, t, Now).Version);
        t = t.Apply(new TenantSuspended("acme", "x", Now)); versions.Add(AdmissionLimits.Of(d, t, Now).Version);
        d = d.Apply(new ThrottleLifted("dep-1", 0, 0, Now)); versions.Add(AdmissionLimits.Of(d, t, Now).Version);
        t = t.Apply(new TenantReinstated("acme", Now)); versions.Add(AdmissionLimits.Of(d, t, Now).Version);
        d = d.Apply(new SpilloverEnabled("dep-1", Now)); versions.Add(AdmissionLimits.Of(d, t, Now).Version);
        d = d.Apply(new DeploymentReleased("dep-1", 2, Now)); versions.Add(AdmissionLimits.Of(d, t, Now).Version);
        Assert.Equal([1L, 2, 3, 4, 5, 6, 7, 8], versions);
        Assert.Equal(0, d.Version); // the stream version is not the admission version: usage events do not count
    }

    [Fact]
    public void State_follows_release_then_suspension_then_throttle()
    {
        var d = ActiveDeployment();
        var suspended = ActiveTenant().Apply(new TenantSuspended("acme", "x", Now));
        Assert.Equal(AdmissionState.Throttled, AdmissionLimits.StateOf(d with { Throttled = true }, ActiveTenant()));
        Assert.Equal(AdmissionState.Suspended, AdmissionLimits.StateOf(d with { Throttled = true }, suspended));
        Assert.Equal(AdmissionState.Released, AdmissionLimits.StateOf(d.Apply(new DeploymentReleased("dep-1", 1, Now)), suspended));
    }

    [Fact]
    public void A_check_admits_what_the_bucket_holds_and_says_how_long_to_wait_for_the_rest()
    {
        var d = ActiveDeployment() with { BucketLevel = 2000, BucketAt = Now };
        var admitted = AdmissionLimits.Check(d, ActiveTenant(), 500, Now);
        Assert.True(admitted.Admitted);
        Assert.Equal(0, admitted.RemainingTokens);
        var refused = AdmissionLimits.Check(d, ActiveTenant(), 917, Now);
        Assert.False(refused.Admitted);
        Assert.Equal(10_008, refused.RetryAfterMs); // 417 tokens at 41.67/s
    }

    [Fact]
    public void A_throttled_deployment_refuses_unless_it_spills_over_and_a_suspended_one_refuses_always()
    {
        var throttled = ActiveDeployment() with { Throttled = true, BucketLevel = 2600, BucketAt = Now };
        Assert.False(AdmissionLimits.Check(throttled, ActiveTenant(), 1, Now).Admitted);
        Assert.True(AdmissionLimits.Check(throttled with { Spillover = true }, ActiveTenant(), 1, Now).Admitted);
        Assert.False(AdmissionLimits.Check(ActiveDeployment(), ActiveTenant().Apply(new TenantSuspended("acme", "x", Now)), 1, Now).Admitted);
    }
}
