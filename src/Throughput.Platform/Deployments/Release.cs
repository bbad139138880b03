using Throughput.Http;

namespace Throughput.Deployments;

public static class Release
{
    public static DeploymentEvent[] Decide(Deployment deployment, DateTimeOffset now) =>
        deployment.Status == DeploymentStatus.Released ? [] : [new DeploymentReleased(deployment.Id, deployment.Ptu, now)];

    public static RouteGroupBuilder MapRelease(this RouteGroupBuilder group)
    {
        group.MapPost("/{deploymentId}/release", (string deploymentId, HttpContext http, CancellationToken ct) =>
                DeploymentChanges.ApplyAsync(http, deploymentId, new ReleaseDeployment(), ct))
            .WithName("ReleaseDeployment").WithHeader(ContractHeader.IfMatch).WithHeader(ContractHeader.ETag)
            .WithSummary("Give the deployment's PTUs back; billing stops at this moment. Requires If-Match.")
            .ProducesProblem(404).ProducesProblem(412).ProducesProblem(428);
        return group;
    }
}
