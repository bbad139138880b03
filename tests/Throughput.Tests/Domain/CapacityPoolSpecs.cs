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
