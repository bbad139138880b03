using Throughput.Catalog;
using Throughput.Configuration;

namespace Throughput.Capacity;

public sealed class CapacityModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(PoolOpened)] = "pool_opened",
        [typeof(CapacityAdded)] = "pool_capacity_added",
        [typeof(CapacityRemoved)] = "pool_capacity_removed",
        [typeof(PtusAllocated)] = "pool_ptus_allocated",
        [typeof(PtusFreed)] = "pool_ptus_freed",
        [typeof(PoolSizedFromGpus)] = "pool_sized_from_gpus",
        [typeof(PoolSizedInPtus)] = "pool_sized_in_ptus",
        [typeof(GpuCalibrated)] = "gpu_calibrated",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(CapacityPool), typeof(GpuCalibration)];

    public override void MapEndpoints(WebApplication app)
    {
        var catalog = app.Services.GetRequiredService<ModelCatalog>();
        app.MapPools(catalog);
        app.MapEstimate(catalog);
        app.MapRegions(catalog);
    }
}
