using Throughput.Catalog;
using Throughput.Configuration;

namespace Throughput.Forge;

/// <summary>Project Forge: Data Zone and Global deployments placed across a geography's pools, and re-placed when a region is drained or a pool raised; the global view of capacity against what is sold, placed and served.</summary>
public sealed class ForgeModule : FeatureModule
{
    public override void MapEndpoints(WebApplication app)
    {
        var catalog = app.Services.GetRequiredService<ModelCatalog>();
        app.MapDrain(catalog);
        app.MapPoolCapacity(catalog);
        app.MapGlobalView(catalog);
    }
}
