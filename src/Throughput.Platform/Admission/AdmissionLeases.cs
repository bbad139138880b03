using System.Security.Claims;
using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Http;
using Throughput.Metering;

namespace Throughput.Admission;

/// <summary>
/// The leases of every deployment, in this host's memory. Leases expire within seconds, so nothing is stored: after a
/// restart the table fills again from the next renewals (within one renew interval), and meanwhile replicas keep admitting
/// within the leases they hold. The host answering renewals must be the only one for a deployment: behind several API
/// hosts, route <c>/v1/admission/leases</c> to one of them, or each would divide the rate among the replicas it hears of.
/// </summary>
public sealed class AdmissionLeases(IConfiguration configuration)
{
    readonly Lock _gate = new();
    readonly Dictionary<string, DeploymentLeases> _deployments = new(StringComparer.Ordinal);

    public TimeSpan Ttl { get; } = configuration.GetValue("Admission:LeaseTtl", AdmissionLeaseTopology.Ttl);

    public AdmissionLease Renew(string replicaId, Deployment d, long demand, DateTimeOffset now)
    {
        lock (_gate)
        {
            var (leases, granted) = LeaseAllocation.Renew(_deployments.GetValueOrDefault(d.Id) ?? DeploymentLeases.None, replicaId, demand,
                d.Limit.TokensPerMinute, d.Limit.BurstTokens, now, Ttl);
            _deployments[d.Id] = leases;
            return LeaseOf(d.Id, granted, leases);
        }
    }

    /// <summary>Gives back every lease the replica holds.</summary>
    public void Release(string replicaId)
    {
        lock (_gate)
            foreach (var (deploymentId, leases) in _deployments.ToList()) _deployments[deploymentId] = LeaseAllocation.Release(leases, replicaId);
    }

    /// <summary>A deployment's live leases now.</summary>
    public IReadOnlyList<AdmissionLease> Of(string deploymentId, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_deployments.TryGetValue(deploymentId, out var leases)) return [];
            leases = _deployments[deploymentId] = LeaseAllocation.Expire(leases, now, Ttl);
            return [.. leases.Replicas.Values.Select(r => LeaseOf(deploymentId, r, leases))];
        }
    }

    AdmissionLease LeaseOf(string deploymentId, ReplicaShare r, DeploymentLeases leases) =>
        new(deploymentId, r.ReplicaId, r.TokensPerMinute, r.BurstTokens, r.Demand, leases.Replicas.Count, leases.Version, r.RenewedAt + Ttl);
}

/// <summary>The lease side for serving nodes: renew (the answer is the lease), give back on stopping, and list a deployment's leases.</summary>
public static class AdmissionLeasesApi
{
    public sealed class RenewalValidator : AbstractValidator<AdmissionLeaseRenewal>
    {
        public RenewalValidator()
        {
            RuleFor(x => x.Demands).Must(d => d is { Count: > 0 and <= AdmissionApi.MaxQuery })
                .WithMessage($"Between 1 and {AdmissionApi.MaxQuery} deployments.");
            RuleForEach(x => x.Demands).ChildRules(d =>
            {
                d.RuleFor(x => x.DeploymentId).NotEmpty().MaximumLength(100);
                d.RuleFor(x => x.TokensPerMinute).InclusiveBetween(0, 1_000_000_000_000);
            });
        }
    }

    public static IEndpointRouteBuilder MapAdmissionLeases(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admission/leases").RequireAuthorization(Policies.ServingNode).WithTags("Admission (serving nodes)");

        group.MapPost("/", async (AdmissionLeaseRenewal renewal, ClaimsPrincipal user, IQuerySession session, AdmissionTable table,
                AdmissionLeases leases, TimeProvider clock, CancellationToken ct) =>
            {
                if (await NodeOfAsync(user, session, ct) is not { } node) return NotANode();
                var found = new List<(Deployment Deployment, long Demand)>(renewal.Demands.Count);
                foreach (var demand in renewal.Demands.DistinctBy(d => d.DeploymentId))
                    if (await table.FindAsync(demand.DeploymentId, ct) is { } d) found.Add((d, demand.TokensPerMinute));
                // Another node's deployment would take a share from the nodes that do serve it: refused whole, nothing renewed.
                if (found.Where(f => !node.MayServe(f.Deployment)).Select(f => f.Deployment.Id).ToList() is { Count: > 0 } foreign)
                    return Results.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Outside the node's registration",
                        detail: $"Serving node '{node.ProducerId}' is not registered to serve {string.Join(", ", foreign)}.");
                var now = clock.GetUtcNow();
                return Results.Ok(found.Select(f => leases.Renew(node.ProducerId, f.Deployment, f.Demand, now)).ToList());
            })
            .ValidateWith(new RenewalValidator())
            .WithName("RenewAdmissionLeases")
            .WithSummary("Renew this serving node's leases with its demand per deployment; the answer is its share of each (unknown ids are left out).")
            .Produces<IReadOnlyList<AdmissionLease>>().ProducesProblem(403);

        group.MapDelete("/", async (ClaimsPrincipal user, IQuerySession session, AdmissionLeases leases, CancellationToken ct) =>
            {
                if (await NodeOfAsync(user, session, ct) is not { } node) return NotANode();
                leases.Release(node.ProducerId);
                return Results.NoContent();
            })
            .WithName("ReleaseAdmissionLeases").WithSummary("Give back every lease of this serving node at once (when it stops), rather than after their TTL.")
            .Produces(204).ProducesProblem(403);

        group.MapGet("/{deploymentId}", async (string deploymentId, ClaimsPrincipal user, IQuerySession session, AdmissionTable table,
                AdmissionLeases leases, TimeProvider clock, CancellationToken ct) =>
            {
                if (await table.FindAsync(deploymentId, ct) is not { } d)
                    return Results.Problem(statusCode: 404, title: "Not found", detail: $"No deployment '{deploymentId}'.");
                if (!user.IsInRole(nameof(Role.Operator)) && (await NodeOfAsync(user, session, ct) is not { } node || !node.MayServe(d))) return NotANode();
                return Results.Ok(leases.Of(deploymentId, clock.GetUtcNow()));
            })
            .WithName("ListAdmissionLeases").WithSummary("A deployment's live leases: who holds which share of its rate and burst, for what demand.")
            .Produces<IReadOnlyList<AdmissionLease>>().ProducesProblem(403).ProducesProblem(404);
        return app;
    }

    /// <summary>The serving node a key was issued for, unless revoked: a lease is always the caller's own.</summary>
    static async Task<ServingNode?> NodeOfAsync(ClaimsPrincipal user, IQuerySession session, CancellationToken ct) =>
        user.Producer() is { } producer && await session.LoadAsync<ServingNode>(ServingNode.StreamId(producer), ct) is { Revoked: false } node ? node : null;

    static IResult NotANode() => Results.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Not a registered serving node's key",
        detail: "Leases are held by serving nodes: use a key issued with the node's producer id as its name, for a registered node whose scope covers the deployment.");
}
