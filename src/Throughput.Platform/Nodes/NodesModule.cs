using Throughput.Configuration;

namespace Throughput.Nodes;

public sealed class NodesModule : FeatureModule
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
    }

    public override void MapEndpoints(WebApplication app) => app.MapServingNodes();
}
