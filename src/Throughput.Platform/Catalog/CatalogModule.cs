using Throughput.Configuration;

namespace Throughput.Catalog;

public sealed class CatalogModule : FeatureModule
{
    public override void MapEndpoints(WebApplication app) => app.MapModels(app.Services.GetRequiredService<ModelCatalog>());
}
