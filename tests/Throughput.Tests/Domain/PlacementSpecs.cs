using Throughput.Capacity;

namespace Throughput.Tests.Domain;

public sealed class PlacementSpecs
{
    static readonly DateTimeOffset Now = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);

    static CapacityPool Pool(string region, decimal capacity, decimal sold = 0) => new(CapacityPool.StreamId("gpt-4o", region), "gpt-4o", region, capacity, sold, 1);

    static Placed Place(decimal ptu, IReadOnlyList<PlacedPtu> current, params CapacityPool[] pools) =>
        Placement.Place(pools, current, "eastus", "dep-1", ptu, Now);

    [Fact]
    public void A_purchase_goes_whole_to_the_region_named_when_it_has_room()
    {
        var placed = Place(3, [], Pool("eastus", 4), Pool("eastus2", 10));
        Assert.Equal([new PlacedPtu("eastus", 3)], placed.Shares);
        Assert.Equal([new PtusAllocated("pool:gpt-4o:eastus", "dep-1", 3, Now)], placed.PoolEvents);
    }

    [Fact]
    public void Without_room_there_it_goes_whole_to_the_roomiest_region_that_has_room()
    {
        var placed = Place(5, [], Pool("eastus", 4), Pool("eastus2", 6), Pool("westus3", 8));
        Assert.Equal([new PlacedPtu("westus3", 5)], placed.Shares);
    }

    [Fact]
    public void When_no_region_has_room_for_all_of_it_it_is_split_over_the_roomiest_and_no_pool_gives_more_than_it_has()
    {
        var placed = Place(9, [], Pool("eastus", 4, sold: 1), Pool("eastus2", 6, sold: 2), Pool("westus3", 5));
        Assert.Equal([new PlacedPtu("eastus2", 4), new PlacedPtu("westus3", 5)], placed.Shares); // 3, 4 and 5 free: the roomiest two suffice
        Assert.Equal(0, placed.UnplacedPtu);
    }

    [Fact]
    public void What_fits_nowhere_is_unplaced()
    {
        var placed = Place(9, [], Pool("eastus", 2), Pool("eastus2", 3));
        Assert.Equal(4, placed.UnplacedPtu);
        Assert.Equal(5, placed.Shares.Sum(s => s.Ptu));
    }

    [Fact]
    public void A_drained_pools_share_moves_and_what_stays_in_the_others_does_not()
    {
        // dep-1 holds 2 in eastus (drained to 0, so oversold by its own 2) and 1 in eastus2.
        var placed = Place(3, [new PlacedPtu("eastus", 2), new PlacedPtu("eastus2", 1)], Pool("eastus", 0, sold: 2), Pool("eastus2", 2, sold: 1), Pool("westus3", 5));
        Assert.Equal([new PlacedPtu("eastus2", 1), new PlacedPtu("westus3", 2)], placed.Shares);
        Assert.Equal<PoolEvent>([new PtusFreed("pool:gpt-4o:eastus", "dep-1", 2, Now), new PtusAllocated("pool:gpt-4o:westus3", "dep-1", 2, Now)], placed.PoolEvents);
    }
}
