using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Throughput.Catalog;
using Throughput.Configuration;

namespace Throughput.Tenants;

public sealed class TenantsModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(TenantCreated)] = "tenant_created",
        [typeof(ApiKeyIssued)] = "api_key_issued",
        [typeof(ApiKeyRevoked)] = "api_key_revoked",
        [typeof(TenantSuspended)] = "tenant_suspended",
        [typeof(TenantReinstated)] = "tenant_reinstated",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(Tenant)];

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
        if (layout == ProjectionLayout.Live) opts.Projections.Add<ApiKeyProjection>(ProjectionLifecycle.Inline);
    }

    public override void AddReadModels(CompositeProjection readModels, StoreOptions opts, ProjectionLayout layout)
    {
        if (layout == ProjectionLayout.SinglePassRebuild) readModels.Add<ApiKeyProjection>();
    }

    public override void MapEndpoints(WebApplication app) => app.MapManageTenants(app.Services.GetRequiredService<ModelCatalog>());
}
