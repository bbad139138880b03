using FluentValidation;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Deployments;

public static class Spillover
{
    public static DeploymentEvent[] Decide(Deployment deployment, Tenant tenant, bool enabled, DateTimeOffset now)
    {
        if (deployment.Status == DeploymentStatus.Released)
            throw RuleViolation.Conflict($"Deployment '{deployment.Id}' is released.");
        if (deployment.Spillover == enabled) return [];
        if (enabled) tenant.EnsureActive();
        return enabled ? [new SpilloverEnabled(deployment.Id, now)] : [new SpilloverDisabled(deployment.Id, now)];
    }

    public static RouteGroupBuilder MapSpillover(this RouteGroupBuilder group)
    {
        group.MapPut("/{deploymentId}/spillover", (string deploymentId, SetSpillover command, HttpContext http, CancellationToken ct) =>
                DeploymentChanges.ApplyAsync(http, deploymentId, command, ct))
            .ValidateWith(new InlineValidator<SetSpillover>())
            .WithName("SetSpillover").WithHeader(ContractHeader.ETag)
            .WithSummary("Serve requests above the purchased rate on the pay-per-token spillover deployment, billed per token.")
            .ProducesProblem(404).ProducesProblem(409);
        return group;
    }
}
