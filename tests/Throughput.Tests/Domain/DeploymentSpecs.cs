using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Http;
using Throughput.Tenants;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class DeploymentSpecs
{
    static PurchaseDeployment Buy(decimal ptu) => new("docs", "gpt-4o", "eastus", DeploymentType.Global, ptu);

    /// <summary>A gpt-4o pool in eastus with this much capacity, of which this much is sold.</summary>
    static CapacityPool Pool(decimal capacity, decimal sold = 0) => new(CapacityPool.StreamId("gpt-4o", "eastus"), "gpt-4o", "eastus", capacity, sold, 0);

    static Purchase.Decision Purchased(Tenant tenant, decimal ptu, CapacityPool? pool = null) =>
        Purchase.Decide(tenant, Gpt4o, pool ?? Pool(100), Buy(ptu), "dep-1", 60, Now);

    [Fact]
    public void Given_an_active_tenant_when_buying_a_fractional_amount_then_DeploymentCreated_with_the_model_rates_and_the_ptus_taken_from_the_pool()
    {
        var (created, pool) = Purchased(ActiveTenant(), 0.5m);
        Assert.Equal(Created(0.5m), created);
        Assert.Equal([new PtusAllocated(CapacityPool.StreamId("gpt-4o", "eastus"), "dep-1", 0.5m, Now)], pool);
    }

    [Fact]
    public void Given_a_pool_without_room_or_no_pool_when_buying_then_conflict_and_nothing_is_bought()
    {
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Purchased(ActiveTenant(), 2, Pool(10, sold: 9))).Kind);
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Purchase.Decide(ActiveTenant(), Gpt4o, null, Buy(1), "dep-1", 60, Now)).Kind);
    }

    [Theory]
    [InlineData(0.05)]
    [InlineData(0.25)]
    [InlineData(1.05)]
    public void Given_an_amount_off_the_minimum_or_increment_when_buying_then_unprocessable(double ptu) =>
        Assert.Equal(RuleKind.Unprocessable, Assert.Throws<RuleViolation>(() => Purchased(ActiveTenant(), (decimal)ptu)).Kind);

    [Fact]
    public void Given_a_suspended_tenant_when_buying_then_conflict() =>
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() =>
            Purchased(ActiveTenant().Apply(new TenantSuspended("acme", "x", Now)), 1)).Kind);

    [Fact]
    public void Given_a_tenant_in_a_currency_the_model_is_not_priced_in_when_buying_then_unprocessable() =>
        Assert.Equal(RuleKind.Unprocessable, Assert.Throws<RuleViolation>(() => Purchased(ActiveTenant("JPY"), 1)).Kind);

    [Fact]
    public void Idempotency_keys_map_to_the_same_deployment_per_tenant_only()
    {
        Assert.Equal(Purchase.DeploymentIdFor("acme", "k"), Purchase.DeploymentIdFor("acme", "k"));
        Assert.NotEqual(Purchase.DeploymentIdFor("acme", "k"), Purchase.DeploymentIdFor("globex", "k"));
        Assert.NotEqual(Purchase.DeploymentIdFor("acme", null), Purchase.DeploymentIdFor("acme", null));
    }

    [Fact]
    public void The_admission_limit_follows_the_ptus_and_the_burst()
    {
        var deployment = ActiveDeployment(0.5m);
        Assert.Equal(new AdmissionLimit(1250, 1250), deployment.Limit);
        Assert.Equal(new AdmissionLimit(0, 0), deployment.Apply(new DeploymentReleased("dep-1", 0.5m, Now)).Limit);
        Assert.Equal(new AdmissionLimit(3750, 1875), (deployment with { BurstSeconds = 30 }).Apply(new DeploymentResized("dep-1", 0.5m, 1.5m, Now)).Limit);
    }

    [Fact]
    public void Given_a_deployment_when_resized_then_DeploymentResized_and_the_same_size_is_a_no_op()
    {
        Assert.Equal([new DeploymentResized("dep-1", 1, 2.3m, Now)], Resize.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, new ResizeDeployment(2.3m), Now));
        Assert.Equal([new DeploymentResized("dep-1", 1, 0.1m, Now)], Resize.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, new ResizeDeployment(0.1m), Now));
        Assert.Empty(Resize.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, new ResizeDeployment(1), Now));
    }

    [Fact]
    public void Given_a_released_deployment_when_resized_then_conflict() =>
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() =>
            Resize.Decide(ActiveDeployment().Apply(new DeploymentReleased("dep-1", 1, Now)), ActiveTenant(), Gpt4o, new ResizeDeployment(2), Now)).Kind);

    [Fact]
    public void Given_a_deployment_when_resized_off_the_increment_then_unprocessable() =>
        Assert.Equal(RuleKind.Unprocessable, Assert.Throws<RuleViolation>(() => Resize.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, new ResizeDeployment(1.01m), Now)).Kind);

    [Fact]
    public void Given_a_deployment_when_released_then_DeploymentReleased_with_its_ptus_and_again_nothing()
    {
        var events = Release.Decide(ActiveDeployment(2), Now);
        Assert.Equal([new DeploymentReleased("dep-1", 2, Now)], events);
        Assert.Empty(Release.Decide(ActiveDeployment(2).Apply((DeploymentReleased)events[0]), Now));
    }

    [Fact]
    public void Spillover_toggles_only_on_change_and_not_after_release()
    {
        Assert.Equal([new SpilloverEnabled("dep-1", Now)], Spillover.Decide(ActiveDeployment(), ActiveTenant(), true, Now));
        Assert.Empty(Spillover.Decide(ActiveDeployment(), ActiveTenant(), false, Now));
        Assert.Equal([new SpilloverDisabled("dep-1", Now)], Spillover.Decide(ActiveDeployment().Apply(new SpilloverEnabled("dep-1", Now)), ActiveTenant(), false, Now));
        Assert.Throws<RuleViolation>(() => Spillover.Decide(ActiveDeployment().Apply(new DeploymentReleased("dep-1", 1, Now)), ActiveTenant(), true, Now));
    }

    static Tenant SuspendedTenant() => ActiveTenant().Apply(new TenantSuspended("acme", "unpaid", Now));

    [Fact]
    public void Given_a_suspended_tenant_when_it_grows_a_deployment_or_turns_spillover_on_then_it_is_refused_but_it_may_shrink_and_turn_spillover_off()
    {
        var two = ActiveDeployment(ptu: 2m);
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Resize.Decide(two, SuspendedTenant(), Gpt4o, new ResizeDeployment(50), Now)).Kind);
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Spillover.Decide(two, SuspendedTenant(), true, Now)).Kind);
        Assert.Equal([new DeploymentResized("dep-1", 2, 1, Now)], Resize.Decide(two, SuspendedTenant(), Gpt4o, new ResizeDeployment(1), Now));
        Assert.Equal([new SpilloverDisabled("dep-1", Now)], Spillover.Decide(two.Apply(new SpilloverEnabled("dep-1", Now)), SuspendedTenant(), false, Now));
    }

    [Fact]
    public void A_change_that_grows_a_deployment_takes_the_ptus_from_its_pool_one_that_shrinks_or_releases_gives_them_back()
    {
        var pool = Pool(10, sold: 1);
        var grown = DeploymentChanges.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, pool, new ResizeDeployment(3), Now);
        Assert.Equal([new DeploymentResized("dep-1", 1, 3, Now)], grown.Events);
        Assert.Equal([new PtusAllocated(pool.Id, "dep-1", 2, Now)], grown.PoolEvents);

        var shrunk = DeploymentChanges.Decide(ActiveDeployment(2), ActiveTenant(), Gpt4o, pool, new ResizeDeployment(0.5m), Now);
        Assert.Equal([new PtusFreed(pool.Id, "dep-1", 1.5m, Now)], shrunk.PoolEvents);

        var released = DeploymentChanges.Decide(ActiveDeployment(2), ActiveTenant(), Gpt4o, pool, new ReleaseDeployment(), Now);
        Assert.Equal([new DeploymentReleased("dep-1", 2, Now)], released.Events);
        Assert.Equal([new PtusFreed(pool.Id, "dep-1", 2, Now)], released.PoolEvents);
    }

    [Fact]
    public void A_resize_the_pool_has_no_room_for_is_refused_whole_and_changes_that_move_no_ptus_leave_the_pool_alone()
    {
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() =>
            DeploymentChanges.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, Pool(10, sold: 9), new ResizeDeployment(3), Now)).Kind);
        Assert.Empty(DeploymentChanges.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, Pool(10), new ResizeDeployment(1), Now).PoolEvents);
        var spill = DeploymentChanges.Decide(ActiveDeployment(), ActiveTenant(), Gpt4o, null, new SetSpillover(true), Now);
        Assert.Equal([new SpilloverEnabled("dep-1", Now)], spill.Events);
        Assert.Empty(spill.PoolEvents);
    }

    [Fact]
    public void A_resize_of_a_model_no_longer_sold_is_refused() =>
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() =>
            DeploymentChanges.Decide(ActiveDeployment(), ActiveTenant(), null, Pool(10), new ResizeDeployment(2), Now)).Kind);

    [Fact]
    public void A_deployment_folds_its_own_events_and_nothing_else()
    {
        var folded = ActiveDeployment().Then([new DeploymentResized("dep-1", 1, 2, Now), new SpilloverEnabled("dep-1", Now), new DeploymentReleased("dep-1", 2, Now)]);
        Assert.Equal((2m, true, DeploymentStatus.Released, 4L), (folded.Ptu, folded.Spillover, folded.Status, folded.Revision));
    }
}
