using Throughput.Catalog;
using Throughput.Configuration;

namespace Throughput.Forge;

/// <summary>Project Forge: Data Zone and Global deployments placed across a geography's pools, and re-placed when a region is drained.</summary>
public sealed class ForgeModule : FeatureModule
{
    public override void MapEndpoints(WebApplication app) => app.MapDrain(app.Services.GetRequiredService<ModelCatalog>());
}
