using FluentValidation;
using Marten;
using Throughput.Admission;
using Throughput.Access;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Deployments;

public sealed record SetSpillover(bool Enabled);

public static class Spillover
{
    public static object[] Decide(Deployment deployment, Tenant tenant, bool enabled, DateTimeOffset now)
    {
        if (deployment.Status == DeploymentStatus.Released)
            throw RuleViolation.Conflict($"Deployment '{deployment.Id}' is released.");
        if (deployment.Spillover == enabled) return [];
        if (enabled) tenant.EnsureActive();
        return enabled ? [new SpilloverEnabled(deployment.Id, now)] : [new SpilloverDisabled(deployment.Id, now)];
    }

    public static RouteGroupBuilder MapSpillover(this RouteGroupBuilder group)
    {
        group.MapPut("/{deploymentId}/spillover", async (string deploymentId, SetSpillover command, HttpContext http, IDocumentStore store, TimeProvider clock, AdmissionPush push, CancellationToken ct) =>
                await ReadDeployments.WriteAsync(store, async session =>
            {
                var stream = await session.Events.FetchForWriting<Deployment>(deploymentId, ct);
                stream.Aggregate.EnsureOwnedBy(deploymentId, http.User.TenantId()!);
                var deployment = stream.Aggregate!;
                var tenant = await session.LoadAsync<Tenant>(Tenant.StreamId(deployment.TenantId), ct) ?? throw RuleViolation.NotFound($"No tenant '{deployment.TenantId}'.");
                var events = Decide(deployment, tenant, command.Enabled, clock.GetUtcNow());
                if (events.Length > 0)
                {
                    stream.AppendMany(events);
                    await session.SaveChangesAsync(ct);
                    await push.TryPublishCurrentAsync(session, [deploymentId], ct);
                    deployment = events.Aggregate(deployment, (d, e) => d.Then(e));
                }
                return await ReadDeployments.OkAsync(http, session, deployment, ct);
            }))
            .ValidateWith(new InlineValidator<SetSpillover>())
            .WithName("SetSpillover")
            .WithSummary("Serve requests above the purchased rate on the pay-per-token spillover deployment, billed per token.")
            .Produces<DeploymentView>().ProducesProblem(404).ProducesProblem(409);
        return group;
    }
}
