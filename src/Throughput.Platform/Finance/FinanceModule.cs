using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Throughput.Configuration;

namespace Throughput.Finance;

public sealed class FinanceModule : FeatureModule
{
    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
        // Rewritten on every page of usage: queried fields in columns of their own (see DeploymentsModule).
        opts.Schema.For<RevenueRow>().Duplicate(r => r.Period);
        opts.Schema.For<PoolMonth>().Duplicate(m => m.Period);
        opts.Schema.For<PoolUtilization>().Duplicate(m => m.Period);
        // Marten versions the tables of the documents a projection declares, not those a custom projection stores: these
        // carry the read models' version in their names themselves, so a new version counts the log into empty ones.
        opts.Schema.For<PoolUtilization>().DocumentAlias($"poolutilization_{ReadModels.Version}");
        opts.Schema.For<PooledDeployment>().DocumentAlias($"pooleddeployment_{ReadModels.Version}");
        opts.Schema.For<PoolMinute>().DocumentAlias($"poolminute_{ReadModels.Version}");
        opts.Storage.ExtendedSchemaObjects.Add(UsageHours.Definition(opts.DatabaseSchemaName));
    }

    public override void AddUsageSeries(CompositeProjection series, StoreOptions opts)
    {
        series.Add(new PoolUtilizationProjection(), options =>
        {
            options.DeleteDataInTableOnTeardown(UsageHours.TableName(opts.DatabaseSchemaName));
            options.DeleteViewTypeOnTeardown<PooledDeployment>();
            options.DeleteViewTypeOnTeardown<PoolUtilization>();
            options.DeleteViewTypeOnTeardown<PoolMinute>();
        });
        foreach (var type in PoolUtilizationProjection.EventTypes) series.IncludeType(type);
    }

    public override void AddReadModels(CompositeProjection readModels, StoreOptions opts, ProjectionLayout layout)
    {
        readModels.Add<RevenueProjection>();
        readModels.Add<PoolMonthProjection>();
    }

    public override void MapEndpoints(WebApplication app) => app.MapFinance();
}
