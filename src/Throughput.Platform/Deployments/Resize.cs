using FluentValidation;
using Marten;
using Throughput.Admission;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Deployments;

public sealed record ResizeDeployment(decimal Ptu);

public static class Resize
{
    public sealed class Validator : AbstractValidator<ResizeDeployment>
    {
        public Validator() => RuleFor(x => x.Ptu).GreaterThan(0).LessThanOrEqualTo(100_000).PrecisionScale(12, 4, ignoreTrailingZeros: true);
    }

    public static object[] Decide(Deployment deployment, Tenant tenant, ModelEntry model, ResizeDeployment command, DateTimeOffset now)
    {
        if (deployment.Status == DeploymentStatus.Released)
            throw RuleViolation.Conflict($"Deployment '{deployment.Id}' is released; it cannot be resized.");
        if (command.Ptu > deployment.Ptu) tenant.EnsureActive();
        if (!model.IsValidAmount(command.Ptu))
            throw RuleViolation.Unprocessable($"{command.Ptu} PTU is not sellable for {model.Name}: the minimum is {model.MinimumPtu} PTU in steps of {model.PtuIncrement}.");
        return command.Ptu == deployment.Ptu ? [] : [new DeploymentResized(deployment.Id, deployment.Ptu, command.Ptu, now)];
    }

    public static RouteGroupBuilder MapResize(this RouteGroupBuilder group, ModelCatalog catalog)
    {
        group.MapPost("/{deploymentId}/resize", async (string deploymentId, ResizeDeployment command, HttpContext http, IDocumentStore store, TimeProvider clock, AdmissionPush push, CancellationToken ct) =>
                await ReadDeployments.WriteAsync(store, async session =>
            {
                var (expected, problem) = ETags.RequireIfMatch(http);
                if (problem is not null) return problem;
                var stream = await session.Events.FetchForWriting<Deployment>(deploymentId, ct);
                stream.Aggregate.EnsureOwnedBy(deploymentId, http.User.TenantId()!);
                if (stream.Aggregate!.Revision != expected) return ETags.Stale();
                var deployment = stream.Aggregate;
                var model = catalog.Find(deployment.Model) ?? throw RuleViolation.Conflict($"{deployment.Model} is no longer sold.");

                var tenant = await session.LoadAsync<Tenant>(Tenant.StreamId(deployment.TenantId), ct) ?? throw RuleViolation.NotFound($"No tenant '{deployment.TenantId}'.");
                var events = Decide(deployment, tenant, model, command, clock.GetUtcNow());
                if (events is [DeploymentResized resized])
                {
                    var pool = await session.Events.FetchForExclusiveWriting<CapacityPool>(CapacityPool.StreamId(deployment.Model, deployment.Region), ct);
                    var delta = resized.ToPtu - resized.FromPtu;
                    pool.AppendMany(delta > 0
                        ? PoolDecisions.Allocate(pool.Aggregate, deployment.Model, deployment.Region, deploymentId, delta, resized.ResizedAt)
                        : PoolDecisions.Free(pool.Aggregate!, deploymentId, -delta, resized.ResizedAt));
                    stream.AppendMany(events);
                    await session.SaveChangesAsync(ct);
                    await push.TryPublishCurrentAsync(session, [deploymentId], ct);
                    deployment = deployment.Apply(resized);
                }
                return await ReadDeployments.OkAsync(http, session, deployment, ct);
            }))
            .ValidateWith(new Validator())
            .WithName("ResizeDeployment")
            .WithSummary("Change the PTUs of a deployment. Requires If-Match with the deployment's ETag.")
            .Produces<DeploymentView>().ProducesProblem(404).ProducesProblem(409).ProducesProblem(412).ProducesProblem(422).ProducesProblem(428);
        return group;
    }
}
