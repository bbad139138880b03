using Marten;
using Marten.Events.Projections;
using Throughput.Configuration;

namespace Throughput.Metering;

public sealed class MeteringModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(ServingNodeRegistered)] = "serving_node_registered",
        [typeof(ServingNodeCredentialsIssued)] = "serving_node_credentials_issued",
        [typeof(ServingNodeRevoked)] = "serving_node_revoked",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(ServingNode)];

    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        services.AddSingleton<BrokerAccounts>();
        if (roles.Api) services.AddHostedService<BrokerAccountsReconciler>();
        if (!roles.Metering) return;
        services.AddSingleton<PartitionDeployments>();
        services.AddMeteringTransport(configuration);
        services.AddHostedService<MeterCheckpoints>();
        services.AddSingleton<ThrottleLifter>();
        services.AddHostedService(sp => sp.GetRequiredService<ThrottleLifter>());
        services.AddHostedService<LedgerPruning>();
    }

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
        opts.Storage.ExtendedSchemaObjects.Add(AppliedBatches.Definition(opts.DatabaseSchemaName));
        // Rewritten on every page of usage: its queried field in a column of its own (see DeploymentsModule).
        opts.Schema.For<UsageMinute>().Duplicate(m => m.DeploymentId);
        opts.Schema.For<QuarantinedMetering>().Index(q => q.QuarantinedAt).Index(q => q.ProducerId);
    }

    public override void AddReadModels(CompositeProjection readModels, ProjectionLayout layout) => readModels.Add<UsageSeriesProjection>();

    public override void MapEndpoints(WebApplication app)
    {
        app.MapUsage();
        app.MapUsageSeries();
        app.MapQuarantine();
        app.MapServingNodes();
        app.MapPhaseUtilization(app.Services.GetRequiredService<Catalog.ModelCatalog>());
    }
}
