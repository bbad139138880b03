using Marten;
using Marten.Events.Projections;
using Throughput.Catalog;
using Throughput.Configuration;

namespace Throughput.Adapters;

public sealed class AdaptersModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(AdapterRegistered)] = "adapter_registered",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(Adapter)];

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
        opts.Schema.For<Adapter>().Duplicate(a => a.TenantId);
        opts.Schema.For<AdapterMonth>().Duplicate(m => m.DeploymentId);
    }

    public override void AddReadModels(CompositeProjection readModels, StoreOptions opts, ProjectionLayout layout) => readModels.Add<AdapterUsageProjection>();

    public override void MapEndpoints(WebApplication app)
    {
        var catalog = app.Services.GetRequiredService<ModelCatalog>();
        app.MapAdapterRegistration(catalog);
        app.MapAdapterDeployments(catalog);
        app.MapAdapterUsage();
    }
}
