using Marten;
using Marten.Events.Projections;
using Throughput.Configuration;

namespace Throughput.Metering;

public sealed class MeteringModule : FeatureModule
{
    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
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

    public override void AddUsageSeries(CompositeProjection series, StoreOptions opts)
    {
        series.Add(new UsageMinuteProjection(), options => options.DeleteDataInTableOnTeardown(UsageMinuteProjection.TableName(opts.DatabaseSchemaName)));
        foreach (var type in UsageMinuteProjection.EventTypes) series.IncludeType(type);
    }

    public override void MapEndpoints(WebApplication app)
    {
        app.MapUsage();
        app.MapUsageSeries();
        app.MapQuarantine();
        app.MapPhaseUtilization(app.Services.GetRequiredService<Catalog.ModelCatalog>());
    }
}
