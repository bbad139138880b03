using Marten;
using Throughput.Catalog;
using Throughput.Configuration;

namespace Throughput.Deployments;

public sealed class DeploymentsModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(DeploymentCreated)] = "deployment_created",
        [typeof(DeploymentResized)] = "deployment_resized",
        [typeof(SpilloverEnabled)] = "deployment_spillover_enabled",
        [typeof(SpilloverDisabled)] = "deployment_spillover_disabled",
        [typeof(SpilloverCapReached)] = "deployment_spillover_cap_reached",
        [typeof(SpilloverCapLifted)] = "deployment_spillover_cap_lifted",
        [typeof(DeploymentReleased)] = "deployment_released",
        [typeof(DeploymentPlaced)] = "deployment_placed",
        [typeof(UsageMetered)] = "usage_metered",
        [typeof(UsageBatchMetered)] = "usage_batch_metered",
        [typeof(DeploymentThrottled)] = "deployment_throttled",
        [typeof(ThrottleLifted)] = "deployment_throttle_lifted",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(Deployment)];

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
        opts.Storage.ExtendedSchemaObjects.Add(DeploymentMeters.Definition(opts.DatabaseSchemaName));
        opts.Storage.ExtendedSchemaObjects.Add(DeploymentMeters.CheckpointDefinition(opts.DatabaseSchemaName));
        // A document rewritten on every usage event has its queried fields in columns of their own, indexed there, not in
        // expression indexes on its JSON: an update that leaves those columns alone can then be a HOT update, without a new
        // entry in every index and the bloat that left a deployment's lookup slow.
        opts.Schema.For<Deployment>().Duplicate(d => d.Throttled).Duplicate(d => d.TenantId);
        opts.Events.UseBinarySerializer<UsageBatchMetered>(UsageBatchMeteredBytes.Instance);
    }

    public override void MapEndpoints(WebApplication app) => app.MapDeployments(app.Services.GetRequiredService<ModelCatalog>());
}
