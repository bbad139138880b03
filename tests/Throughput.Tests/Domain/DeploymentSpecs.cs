using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Http;
using Throughput.Tenants;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class DeploymentSpecs
{
    // The decisions as the specs take them: on the folded state, by a tenant in good standing unless another is named.
    static Func<Tenant, IEnumerable<object>> Buying(decimal ptu, CapacityPool? pool) => tenant =>
    {
        var decision = Purchase.Decide(tenant, Gpt4o, ["eastus"], pool is null ? [] : [pool], new PurchaseDeployment("docs", "gpt-4o", "eastus", DeploymentType.Global, ptu), "dep-1", 60, Now);
        return [decision.Created, .. decision.PoolEvents];
    };

    static Func<Deployment, IEnumerable<object>> Resizing(decimal ptu, Tenant? by = null) =>
        deployment => Resize.Decide(deployment, by ?? ActiveTenant(), Gpt4o, new ResizeDeployment(ptu), Now);

    static Func<Deployment, IEnumerable<object>> TurningSpillover(bool on, Tenant? by = null) =>
        deployment => Spillover.Decide(deployment, by ?? ActiveTenant(), on, Now);

    static readonly Func<Deployment, IEnumerable<object>> Releasing = deployment => Release.Decide(deployment, Now);

    /// <summary>A customer's change as it is committed: the deployment's events, then its pool's.</summary>
    static Func<Deployment, IEnumerable<object>> Changing(DeploymentChange change, CapacityPool? pool, ModelEntry? model) => deployment =>
    {
        var decision = DeploymentChanges.Decide(deployment, ActiveTenant(), model, pool is null ? [] : [pool], change, Now);
        return [.. decision.Events, .. decision.PoolEvents];
    };

    [Fact]
    public void Given_an_active_tenant_when_buying_a_fractional_amount_then_DeploymentCreated_with_the_model_rates_and_the_ptus_taken_from_the_pool() =>
        TenantStream.Given(AcmeCreated()).When(Buying(0.5m, Pool(100))).Then(Created(0.5m), new PtusAllocated(PoolId, "dep-1", 0.5m, Now));

    [Fact]
    public void Given_a_pool_without_room_when_buying_then_conflict_and_nothing_is_bought() =>
        TenantStream.Given(AcmeCreated()).When(Buying(2, Pool(10, sold: 9))).ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_no_pool_when_buying_then_conflict_and_nothing_is_bought() =>
        TenantStream.Given(AcmeCreated()).When(Buying(1, null)).ThenFails(RuleKind.Conflict);

    [Theory]
    [InlineData(0.05)]
    [InlineData(0.25)]
    [InlineData(1.05)]
    public void Given_an_amount_off_the_minimum_or_increment_when_buying_then_unprocessable(double ptu) =>
        TenantStream.Given(AcmeCreated()).When(Buying((decimal)ptu, Pool(100))).ThenFails(RuleKind.Unprocessable);

    [Fact]
    public void Given_a_suspended_tenant_when_buying_then_conflict() =>
        TenantStream.Given(AcmeCreated(), AcmeSuspended).When(Buying(1, Pool(100))).ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_tenant_in_a_currency_the_model_is_not_priced_in_when_buying_then_unprocessable() =>
        TenantStream.Given(AcmeCreated("JPY")).When(Buying(1, Pool(100))).ThenFails(RuleKind.Unprocessable);

    [Fact]
    public void Idempotency_keys_map_to_the_same_deployment_per_tenant_only()
    {
        Assert.Equal(Purchase.DeploymentIdFor("acme", "k"), Purchase.DeploymentIdFor("acme", "k"));
        Assert.NotEqual(Purchase.DeploymentIdFor("acme", "k"), Purchase.DeploymentIdFor("globex", "k"));
        Assert.NotEqual(Purchase.DeploymentIdFor("acme", null), Purchase.DeploymentIdFor("acme", null));
    }

    [Fact]
    public void The_admission_limit_follows_the_ptus_and_the_burst() =>
        Assert.Equal(new AdmissionLimit(1250, 1250), DeploymentStream.Given(Created(0.5m)).State.Limit);

    [Fact]
    public void A_released_deployment_admits_nothing() =>
        Assert.Equal(new AdmissionLimit(0, 0), DeploymentStream.Given(Created(0.5m), new DeploymentReleased("dep-1", 0.5m, Now)).State.Limit);

    [Fact]
    public void A_resized_deployment_admits_at_its_new_size_with_a_burst_of_its_own_seconds() =>
        Assert.Equal(new AdmissionLimit(3750, 1875),
            DeploymentStream.Given(Created(0.5m) with { BurstSeconds = 30 }, new DeploymentResized("dep-1", 0.5m, 1.5m, Now)).State.Limit);

    [Fact]
    public void Given_a_deployment_when_grown_then_DeploymentResized() =>
        DeploymentStream.Given(Created(1)).When(Resizing(2.3m)).Then(new DeploymentResized("dep-1", 1, 2.3m, Now));

    [Fact]
    public void Given_a_deployment_when_shrunk_to_the_minimum_then_DeploymentResized() =>
        DeploymentStream.Given(Created(1)).When(Resizing(0.1m)).Then(new DeploymentResized("dep-1", 1, 0.1m, Now));

    [Fact]
    public void Given_a_deployment_when_resized_to_its_own_size_then_nothing_happens() =>
        DeploymentStream.Given(Created(1)).When(Resizing(1)).ThenNothing();

    [Fact]
    public void Given_a_released_deployment_when_resized_then_conflict() =>
        DeploymentStream.Given(Created(1), new DeploymentReleased("dep-1", 1, Now)).When(Resizing(2)).ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_deployment_when_resized_off_the_increment_then_unprocessable() =>
        DeploymentStream.Given(Created(1)).When(Resizing(1.01m)).ThenFails(RuleKind.Unprocessable);

    [Fact]
    public void Given_a_deployment_when_released_then_DeploymentReleased_with_its_ptus() =>
        DeploymentStream.Given(Created(2)).When(Releasing).Then(new DeploymentReleased("dep-1", 2, Now));

    [Fact]
    public void Given_a_released_deployment_when_released_again_then_nothing_happens() =>
        DeploymentStream.Given(Created(2), new DeploymentReleased("dep-1", 2, Now)).When(Releasing).ThenNothing();

    [Fact]
    public void Given_spillover_off_when_turned_on_then_SpilloverEnabled() =>
        DeploymentStream.Given(Created()).When(TurningSpillover(true)).Then(new SpilloverEnabled("dep-1", Now));

    [Fact]
    public void Given_spillover_off_when_turned_off_then_nothing_happens() =>
        DeploymentStream.Given(Created()).When(TurningSpillover(false)).ThenNothing();

    [Fact]
    public void Given_spillover_on_when_turned_off_then_SpilloverDisabled() =>
        DeploymentStream.Given(Created(), new SpilloverEnabled("dep-1", Now)).When(TurningSpillover(false)).Then(new SpilloverDisabled("dep-1", Now));

    [Fact]
    public void Given_a_released_deployment_when_spillover_is_turned_on_then_conflict() =>
        DeploymentStream.Given(Created(), new DeploymentReleased("dep-1", 1, Now)).When(TurningSpillover(true)).ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_suspended_tenant_when_it_grows_a_deployment_then_conflict() =>
        DeploymentStream.Given(Created(2)).When(Resizing(50, by: SuspendedTenant())).ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_suspended_tenant_when_it_turns_spillover_on_then_conflict() =>
        DeploymentStream.Given(Created(2)).When(TurningSpillover(true, by: SuspendedTenant())).ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_suspended_tenant_when_it_shrinks_a_deployment_then_DeploymentResized() =>
        DeploymentStream.Given(Created(2)).When(Resizing(1, by: SuspendedTenant())).Then(new DeploymentResized("dep-1", 2, 1, Now));

    [Fact]
    public void Given_a_suspended_tenant_when_it_turns_spillover_off_then_SpilloverDisabled() =>
        DeploymentStream.Given(Created(2), new SpilloverEnabled("dep-1", Now))
            .When(TurningSpillover(false, by: SuspendedTenant()))
            .Then(new SpilloverDisabled("dep-1", Now));

    [Fact]
    public void A_change_that_grows_a_deployment_takes_the_difference_from_its_pool() =>
        DeploymentStream.Given(Created(1))
            .When(Changing(new ResizeDeployment(3), Pool(10, sold: 1), Gpt4o))
            .Then(new DeploymentResized("dep-1", 1, 3, Now), new PtusAllocated(PoolId, "dep-1", 2, Now));

    [Fact]
    public void A_change_that_shrinks_a_deployment_gives_the_difference_back_to_its_pool() =>
        DeploymentStream.Given(Created(2))
            .When(Changing(new ResizeDeployment(0.5m), Pool(10, sold: 1), Gpt4o))
            .Then(new DeploymentResized("dep-1", 2, 0.5m, Now), new PtusFreed(PoolId, "dep-1", 1.5m, Now));

    [Fact]
    public void A_release_gives_all_its_ptus_back_to_its_pool() =>
        DeploymentStream.Given(Created(2))
            .When(Changing(new ReleaseDeployment(), Pool(10, sold: 1), Gpt4o))
            .Then(new DeploymentReleased("dep-1", 2, Now), new PtusFreed(PoolId, "dep-1", 2, Now));

    [Fact]
    public void A_resize_the_pool_has_no_room_for_is_refused_whole() =>
        DeploymentStream.Given(Created(1)).When(Changing(new ResizeDeployment(3), Pool(10, sold: 9), Gpt4o)).ThenFails(RuleKind.Conflict);

    [Fact]
    public void A_resize_to_the_same_size_leaves_the_pool_alone() =>
        DeploymentStream.Given(Created(1)).When(Changing(new ResizeDeployment(1), Pool(10), Gpt4o)).ThenNothing();

    [Fact]
    public void Turning_spillover_on_needs_no_pool_and_leaves_it_alone() =>
        DeploymentStream.Given(Created(1)).When(Changing(new SetSpillover(true), null, Gpt4o)).Then(new SpilloverEnabled("dep-1", Now));

    [Fact]
    public void A_resize_of_a_model_no_longer_sold_is_refused() =>
        DeploymentStream.Given(Created(1)).When(Changing(new ResizeDeployment(2), Pool(10), model: null)).ThenFails(RuleKind.Conflict);

    [Fact]
    public void A_deployment_folds_its_own_events_and_nothing_else()
    {
        var folded = DeploymentStream.Given(Created(1), new DeploymentResized("dep-1", 1, 2, Now), new SpilloverEnabled("dep-1", Now), new DeploymentReleased("dep-1", 2, Now)).State;
        Assert.Equal((2m, true, DeploymentStatus.Released, 4L), (folded.Ptu, folded.Spillover, folded.Status, folded.Revision));
    }
}
