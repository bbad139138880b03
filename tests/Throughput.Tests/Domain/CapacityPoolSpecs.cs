using Throughput.Capacity;
using Throughput.Http;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class CapacityPoolSpecs
{
    const string Id = "pool:gpt-4o:eastus";

    static CapacityPool Pool(decimal capacity, decimal sold) =>
        CapacityPool.Create(new PoolOpened(Id, "gpt-4o", "eastus", Now))
            .Apply(new CapacityAdded(Id, capacity, Now))
            .Apply(new PtusAllocated(Id, "dep-0", sold, Now));

    [Fact]
    public void Given_no_pool_when_capacity_is_set_then_the_pool_opens_with_it() =>
        Assert.Equal([new PoolOpened(Id, "gpt-4o", "eastus", Now), new CapacityAdded(Id, 100, Now)],
            PoolDecisions.SetCapacity(null, "gpt-4o", "eastus", 100, Now));

    [Fact]
    public void Given_a_pool_when_capacity_is_lowered_then_CapacityRemoved_and_the_same_value_is_a_no_op()
    {
        Assert.Equal([new CapacityRemoved(Id, 40, Now)], PoolDecisions.SetCapacity(Pool(100, 10), "gpt-4o", "eastus", 60, Now));
        Assert.Empty(PoolDecisions.SetCapacity(Pool(100, 10), "gpt-4o", "eastus", 100, Now));
    }

    [Fact]
    public void Given_sold_ptus_when_capacity_goes_below_them_then_conflict() =>
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => PoolDecisions.SetCapacity(Pool(100, 50), "gpt-4o", "eastus", 49.9m, Now)).Kind);

    [Fact]
    public void Given_free_capacity_when_allocating_then_PtusAllocated() =>
        Assert.Equal([new PtusAllocated(Id, "dep-1", 0.5m, Now)], PoolDecisions.Allocate(Pool(10, 9.5m), "gpt-4o", "eastus", "dep-1", 0.5m, Now));

    [Fact]
    public void Given_too_little_free_capacity_when_allocating_then_the_pool_is_exhausted()
    {
        var violation = Assert.Throws<RuleViolation>(() => PoolDecisions.Allocate(Pool(10, 9.6m), "gpt-4o", "eastus", "dep-1", 0.5m, Now));
        Assert.Equal(RuleKind.Conflict, violation.Kind);
        Assert.Contains("exhausted", violation.Message);
    }

    [Fact]
    public void Given_no_pool_when_allocating_then_conflict() =>
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => PoolDecisions.Allocate(null, "gpt-4o", "eastus", "dep-1", 1, Now)).Kind);

    [Fact]
    public void Freeing_gives_ptus_back()
    {
        var pool = Pool(10, 4);
        var freed = (PtusFreed)PoolDecisions.Free(pool, "dep-0", 4, Now).Single();
        Assert.Equal(10, pool.Apply(freed).Free);
    }
}
