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
        opts.Storage.ExtendedSchemaObjects.Add(UsageMinuteProjection.Definition(opts.DatabaseSchemaName));
        opts.Schema.For<QuarantinedMetering>().Index(q => q.QuarantinedAt).Index(q => q.ProducerId);
    }

    public override void AddReadModels(CompositeProjection readModels, StoreOptions opts, ProjectionLayout layout)
    {
        readModels.Add(new UsageMinuteProjection(), options => options.DeleteDataInTableOnTeardown(UsageMinuteProjection.TableName(opts.DatabaseSchemaName)));
        foreach (var type in UsageMinuteProjection.EventTypes) readModels.IncludeType(type);
    }

    public override void MapEndpoints(WebApplication app)
    {
        app.MapUsage();
        app.MapUsageSeries();
        app.MapQuarantine();
        app.MapServingNodes();
        app.MapPhaseUtilization(app.Services.GetRequiredService<Catalog.ModelCatalog>());
    }
}
