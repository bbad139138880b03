using FluentValidation;
using Throughput.Catalog;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Deployments;

public static class Resize
{
    public sealed class Validator : AbstractValidator<ResizeDeployment>
    {
        public Validator() => RuleFor(x => x.Ptu).GreaterThan(0).LessThanOrEqualTo(100_000).PrecisionScale(12, 4, ignoreTrailingZeros: true);
    }

    public static DeploymentEvent[] Decide(Deployment deployment, Tenant tenant, ModelEntry model, ResizeDeployment command, DateTimeOffset now)
    {
        if (deployment.Status == DeploymentStatus.Released)
            throw RuleViolation.Conflict($"Deployment '{deployment.Id}' is released; it cannot be resized.");
        if (command.Ptu > deployment.Ptu) tenant.EnsureActive();
        if (!model.IsValidAmount(command.Ptu))
            throw RuleViolation.Unprocessable($"{command.Ptu} PTU is not sellable for {model.Name}: the minimum is {model.MinimumPtu} PTU in steps of {model.PtuIncrement}.");
        return command.Ptu == deployment.Ptu ? [] : [new DeploymentResized(deployment.Id, deployment.Ptu, command.Ptu, now)];
    }

    public static RouteGroupBuilder MapResize(this RouteGroupBuilder group)
    {
        group.MapPost("/{deploymentId}/resize", (string deploymentId, ResizeDeployment command, HttpContext http, CancellationToken ct) =>
                DeploymentChanges.ApplyAsync(http, deploymentId, command, ct))
            .ValidateWith(new Validator())
            .WithName("ResizeDeployment").WithHeader(ContractHeader.IfMatch).WithHeader(ContractHeader.ETag)
            .WithSummary("Change the PTUs of a deployment. Requires If-Match with the deployment's ETag.")
            .ProducesProblem(404).ProducesProblem(409).ProducesProblem(412).ProducesProblem(422).ProducesProblem(428);
        return group;
    }
}
