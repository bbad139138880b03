using Throughput.Capacity;
using Throughput.Http;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class CapacityPoolSpecs
{
    [Fact]
    public void Given_no_pool_when_capacity_is_set_then_the_pool_opens_with_it() =>
        PoolStream.Given()
            .When(pool => PoolDecisions.SetCapacity(pool, "gpt-4o", "eastus", 100, Now))
            .Then(new PoolOpened(PoolId, "gpt-4o", "eastus", Now), new CapacityAdded(PoolId, 100, Now));

    [Fact]
    public void Given_a_pool_when_capacity_is_lowered_then_CapacityRemoved() =>
        PoolStream.Given(PoolHistory(100, sold: 10))
            .When(pool => PoolDecisions.SetCapacity(pool, "gpt-4o", "eastus", 60, Now))
            .Then(new CapacityRemoved(PoolId, 40, Now));

    [Fact]
    public void Given_a_pool_when_capacity_is_set_to_what_it_has_then_nothing_happens() =>
        PoolStream.Given(PoolHistory(100, sold: 10))
            .When(pool => PoolDecisions.SetCapacity(pool, "gpt-4o", "eastus", 100, Now))
            .ThenNothing();

    [Fact]
    public void Given_sold_ptus_when_capacity_goes_below_them_then_conflict() =>
        PoolStream.Given(PoolHistory(100, sold: 50))
            .When(pool => PoolDecisions.SetCapacity(pool, "gpt-4o", "eastus", 49.9m, Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_free_capacity_when_allocating_then_PtusAllocated() =>
        PoolStream.Given(PoolHistory(10, sold: 9.5m))
            .When(pool => PoolDecisions.Allocate(pool, "gpt-4o", "eastus", "dep-1", 0.5m, Now))
            .Then(new PtusAllocated(PoolId, "dep-1", 0.5m, Now));

    [Fact]
    public void Given_too_little_free_capacity_when_allocating_then_the_pool_is_exhausted() =>
        Assert.Contains("exhausted", PoolStream.Given(PoolHistory(10, sold: 9.6m))
            .When(pool => PoolDecisions.Allocate(pool, "gpt-4o", "eastus", "dep-1", 0.5m, Now))
            .ThenFails(RuleKind.Conflict).Message);

    [Fact]
    public void Given_no_pool_when_allocating_then_conflict() =>
        PoolStream.Given()
            .When(pool => PoolDecisions.Allocate(pool, "gpt-4o", "eastus", "dep-1", 1, Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_sold_ptus_when_freed_then_PtusFreed() =>
        PoolStream.Given(PoolHistory(10, sold: 4))
            .When(pool => PoolDecisions.Free(pool, "dep-0", 4, Now))
            .Then(new PtusFreed(PoolId, "dep-0", 4, Now));

    [Fact]
    public void Freed_ptus_are_free_again() =>
        Assert.Equal(10, PoolStream.Given([.. PoolHistory(10, sold: 4), new PtusFreed(PoolId, "dep-0", 4, Now)]).State.Free);
}

public sealed class GpuCapacitySpecs
{
    static readonly GpuCalibration A100 = GpuCalibration.Create(new GpuCalibrated(GpuCalibration.StreamId("A100-80GB", "gpt-4o"), "A100-80GB", "gpt-4o", 29.7m, 1_098_900, "flywheel", 512, Now));

    [Fact]
    public void Given_no_pool_when_its_gpus_are_stated_then_its_capacity_is_their_calibrated_ptus() =>
        PoolStream.Given()
            .When(pool => PoolDecisions.SetGpus(pool, "gpt-4o", "eastus", A100, 4, Now))
            .Then(new PoolOpened(PoolId, "gpt-4o", "eastus", Now), new CapacityAdded(PoolId, 118.8m, Now), new PoolSizedFromGpus(PoolId, "A100-80GB", 4, 29.7m, Now));

    [Fact]
    public void Given_a_pool_sized_from_gpus_when_the_same_gpus_are_stated_then_nothing_happens() =>
        PoolStream.Given([.. PoolHistory(0), new CapacityAdded(PoolId, 59.4m, Now), new PoolSizedFromGpus(PoolId, "A100-80GB", 2, 29.7m, Now)])
            .When(pool => PoolDecisions.SetGpus(pool, "gpt-4o", "eastus", A100, 2, Now))
            .ThenNothing();

    [Fact]
    public void Given_gpus_sold_down_to_their_last_ptus_when_fewer_gpus_are_stated_than_that_then_conflict() =>
        PoolStream.Given(PoolHistory(59.4m, sold: 40))
            .When(pool => PoolDecisions.SetGpus(pool, "gpt-4o", "eastus", A100, 1, Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_pool_sized_from_gpus_when_its_capacity_is_stated_in_ptus_then_it_is_no_longer_sized_from_them() =>
        PoolStream.Given([.. PoolHistory(0), new CapacityAdded(PoolId, 59.4m, Now), new PoolSizedFromGpus(PoolId, "A100-80GB", 2, 29.7m, Now)])
            .When(pool => PoolDecisions.SetCapacity(pool, "gpt-4o", "eastus", 60, Now))
            .Then(new CapacityAdded(PoolId, 0.6m, Now), new PoolSizedInPtus(PoolId, Now));

    [Fact]
    public void A_calibration_of_another_model_does_not_size_a_pool() =>
        PoolStream.Given()
            .When(pool => PoolDecisions.SetGpus(pool, "gpt-4o-mini", "eastus", A100, 4, Now))
            .ThenFails(RuleKind.Unprocessable);

    [Fact]
    public void Recording_the_figures_a_calibration_already_holds_changes_nothing_and_a_new_figure_replaces_them()
    {
        Assert.Empty(GpuCalibration.Record(A100, "A100-80GB", "gpt-4o", 29.7m, 1_098_900, "flywheel", 512, Now));
        var recorded = Assert.Single(GpuCalibration.Record(A100, "A100-80GB", "gpt-4o", 31.2m, 1_154_400, "flywheel", 512, Now));
        Assert.Equal(31.2m, A100.Apply(recorded).PtuPerGpu);
        Assert.Throws<RuleViolation>(() => GpuCalibration.Record(null, "A100-80GB", "gpt-4o", 0, 1, "flywheel", 512, Now));
    }
}

public sealed class CapacityRegionSpecs
{
    static CapacityPool Pool(string model, string region, decimal capacity, decimal sold) =>
        new(CapacityPool.StreamId(model, region), model, region, capacity, sold, 1);

    [Fact]
    public void Regions_show_the_free_PTUs_of_the_model_and_whether_the_amount_fits()
    {
        var pools = new[] { Pool("gpt-4o", "westus", 10, 9.5m), Pool("gpt-4o", "eastus", 10, 2), Pool("gpt-4o-mini", "eastus", 100, 0) };

        var answer = Regions.Of(Gpt4o, ActiveTenant(), pools, 0.5m);

        Assert.Equal(("USD", 1m, 0.5m), (answer.Currency, answer.PricePerPtuHour, answer.Ptu));
        Assert.Equal([new RegionCapacity("eastus", 8, true), new RegionCapacity("westus", 0.5m, true)], answer.Regions);
        Assert.Equal([false, true], Regions.Of(Gpt4o, ActiveTenant(), pools, 0.6m).Regions.Select(r => r.Fits!.Value).Reverse());
        Assert.All(Regions.Of(Gpt4o, ActiveTenant(), pools, null).Regions, r => Assert.Null(r.Fits));
    }

    [Fact]
    public void The_price_is_the_tenants_currency_or_none() =>
        Assert.Null(Regions.Of(Gpt4o, ActiveTenant("EUR"), [], 1).PricePerPtuHour);
}
