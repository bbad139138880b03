using Marten;
using Throughput.Admission;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Http;

namespace Throughput.Deployments;

public static class Release
{
    public static object[] Decide(Deployment deployment, DateTimeOffset now) =>
        deployment.Status == DeploymentStatus.Released ? [] : [new DeploymentReleased(deployment.Id, deployment.Ptu, now)];

    public static RouteGroupBuilder MapRelease(this RouteGroupBuilder group)
    {
        group.MapPost("/{deploymentId}/release", async (string deploymentId, HttpContext http, IDocumentStore store, TimeProvider clock, AdmissionPush push, CancellationToken ct) =>
                await ReadDeployments.WriteAsync(store, async session =>
            {
                var (expected, problem) = ETags.RequireIfMatch(http);
                if (problem is not null) return problem;
                var stream = await session.Events.FetchForWriting<Deployment>(deploymentId, ct);
                stream.Aggregate.EnsureOwnedBy(deploymentId, http.User.TenantId()!);
                var deployment = stream.Aggregate!;
                if (deployment.Revision != expected) return ETags.Stale();

                var events = Decide(deployment, clock.GetUtcNow());
                if (events is [DeploymentReleased released])
                {
                    var pool = await session.Events.FetchForExclusiveWriting<CapacityPool>(CapacityPool.StreamId(deployment.Model, deployment.Region), ct);
                    pool.AppendMany(PoolDecisions.Free(pool.Aggregate!, deploymentId, released.Ptu, released.ReleasedAt));
                    stream.AppendMany(events);
                    await session.SaveChangesAsync(ct);
                    await push.TryPublishCurrentAsync(session, [deploymentId], ct);
                    deployment = deployment.Apply(released);
                }
                return await ReadDeployments.OkAsync(http, session, deployment, ct);
            }))
            .WithName("ReleaseDeployment")
            .WithSummary("Give the deployment's PTUs back; billing stops at this moment. Requires If-Match.")
            .Produces<DeploymentView>().ProducesProblem(404).ProducesProblem(412).ProducesProblem(428);
        return group;
    }
}
