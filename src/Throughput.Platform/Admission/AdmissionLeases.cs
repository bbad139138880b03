using System.Security.Claims;
using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Http;
using Throughput.Nodes;

namespace Throughput.Admission;

/// <summary>What the lease owner needs of a deployment to divide it and to push its leases: rate, burst, and where it is served.</summary>
public sealed record LeasedDeployment(string Id, string Model, IReadOnlyList<string> Regions, long TokensPerMinute, long BurstTokens)
{
    public static LeasedDeployment Of(Deployment d) =>
        new(d.Id, d.Model, d.ServedRegions(), d.Limit.TokensPerMinute, d.Limit.BurstTokens);
}

/// <summary>A lease answered or pushed, with where to push it.</summary>
public sealed record LeaseHandout(AdmissionLease Lease, LeasedDeployment Deployment);

/// <summary>
/// The leases of every deployment, in the memory of the lease owner (<see cref="LeaseOwner"/>: one host at a time answers
/// every renewal, whichever API host received it). Leases expire within seconds, so nothing is stored: after a change of
/// owner the table fills again from the next renewals (within one renew interval), and meanwhile replicas keep admitting
/// within the leases they hold. For one TTL after it takes over (<see cref="TakeOver"/>) the owner grows no share past what
/// its holder says it holds: by then every lease its predecessor handed out has been renewed here or has expired.
/// </summary>
public sealed class AdmissionLeases(IConfiguration configuration)
{
    readonly Lock _gate = new();
    readonly Dictionary<string, (DeploymentLeases Leases, LeasedDeployment Deployment)> _deployments = new(StringComparer.Ordinal);
    DateTimeOffset _growsFrom = DateTimeOffset.MinValue;

    public TimeSpan Ttl { get; } = configuration.GetValue("Admission:LeaseTtl", AdmissionLeaseTopology.Ttl);

    /// <summary>When this host, as lease owner, grows shares again after taking over; null while it has not been the owner.</summary>
    public DateTimeOffset? GrowsFrom
    {
        get
        {
            lock (_gate) return _growsFrom == DateTimeOffset.MinValue ? null : _growsFrom;
        }
    }

    /// <summary>
    /// This host has become the lease owner (or may have: it cannot tell since when): what it knew of the replicas is
    /// forgotten, as another owner may have changed it, and no share grows until one TTL from now. Versions are kept.
    /// </summary>
    public void TakeOver(DateTimeOffset now)
    {
        lock (_gate)
        {
            foreach (var (id, (leases, d)) in _deployments.ToList())
                _deployments[id] = (leases with { Replicas = DeploymentLeases.None.Replicas }, d);
            _growsFrom = now + Ttl;
        }
    }

    /// <summary>The renewing replica's lease, then the others' that grew out of what became free (to push).</summary>
    public IReadOnlyList<LeaseHandout> Renew(string replicaId, LeasedDeployment d, long demand, HeldShare? held, DateTimeOffset now)
    {
        lock (_gate)
        {
            var known = _deployments.TryGetValue(d.Id, out var k) ? k.Leases : DeploymentLeases.None;
            var (leases, granted, grown) = LeaseAllocation.Renew(known, replicaId, demand, d.TokensPerMinute, d.BurstTokens, now, Ttl, held,
                takingOver: now < _growsFrom);
            _deployments[d.Id] = (leases, d);
            return [.. grown.Prepend(granted).Select(r => new LeaseHandout(LeaseOf(d.Id, r, leases), d))];
        }
    }

    /// <summary>Gives back every lease the replica holds; the leases that grew out of them (to push).</summary>
    public IReadOnlyList<LeaseHandout> Release(string replicaId, DateTimeOffset now)
    {
        var handouts = new List<LeaseHandout>();
        lock (_gate)
            foreach (var (deploymentId, (held, d)) in _deployments.ToList())
            {
                var (leases, grown) = LeaseAllocation.Release(held, replicaId, d.TokensPerMinute, d.BurstTokens, now, Ttl, takingOver: now < _growsFrom);
                _deployments[deploymentId] = (leases, d);
                handouts.AddRange(grown.Select(r => new LeaseHandout(LeaseOf(deploymentId, r, leases), d)));
            }
        return handouts;
    }

    /// <summary>A deployment's live leases now.</summary>
    public IReadOnlyList<AdmissionLease> Of(string deploymentId, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_deployments.TryGetValue(deploymentId, out var known)) return [];
            var leases = LeaseAllocation.Expire(known.Leases, now, Ttl);
            _deployments[deploymentId] = (leases, known.Deployment);
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
                d.RuleFor(x => x.HeldTokensPerMinute).InclusiveBetween(0, 1_000_000_000_000).When(x => x.HeldTokensPerMinute is not null);
                d.RuleFor(x => x.HeldBurstTokens).InclusiveBetween(0, 1_000_000_000_000).When(x => x.HeldBurstTokens is not null);
                // The next lease's version is above it: bounded so that a node cannot run a deployment's versions to overflow (2^53, exact in any JSON reader).
                d.RuleFor(x => x.HeldVersion).InclusiveBetween(0, 1L << 53).When(x => x.HeldVersion is not null);
            });
        }
    }

    public static IEndpointRouteBuilder MapAdmissionLeases(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admission/leases").RequireAuthorization(Policies.ServingNode).WithTags("Admission (serving nodes)");

        group.MapPost("/", async (AdmissionLeaseRenewal renewal, HttpContext http, ClaimsPrincipal user, IQuerySession session, AdmissionTable table,
                LeaseOwner owner, CancellationToken ct) =>
            {
                if (await NodeOfAsync(user, session, ct) is not { } node) return NotANode();
                var found = new List<(Deployment Deployment, AdmissionDemand Demand)>(renewal.Demands.Count);
                foreach (var demand in renewal.Demands.DistinctBy(d => d.DeploymentId))
                    if (await table.FindAsync(demand.DeploymentId, ct) is { } d) found.Add((d, demand));
                // Another node's deployment would take a share from the nodes that do serve it: refused whole, nothing renewed.
                if (found.Where(f => !node.MayServe(f.Deployment)).Select(f => f.Deployment.Id).ToList() is { Count: > 0 } foreign)
                    return Results.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Outside the node's registration",
                        detail: $"Serving node '{node.ProducerId}' is not registered to serve {string.Join(", ", foreign)}.");
                if (found.Count == 0) return Results.Ok(Array.Empty<AdmissionLease>());
                return await OwnerAsync(http, owner, new LeaseAsk(node.ProducerId, [.. found.Select(f => new LeaseDemand(LeasedDeployment.Of(f.Deployment), f.Demand.TokensPerMinute, HeldOf(f.Demand)))]), ct);
            })
            .ValidateWith(new RenewalValidator())
            .WithName("RenewAdmissionLeases")
            .WithSummary("Renew this serving node's leases with its demand per deployment; the answer is its share of each (unknown ids are left out).")
            .Produces<IReadOnlyList<AdmissionLease>>().ProducesProblem(403).ProducesProblem(503);

        group.MapDelete("/", async (HttpContext http, ClaimsPrincipal user, IQuerySession session, LeaseOwner owner, CancellationToken ct) =>
            {
                if (await NodeOfAsync(user, session, ct) is not { } node) return NotANode();
                return await OwnerAsync(http, owner, new LeaseAsk(node.ProducerId, Release: true), ct) is var answer && answer is IStatusCodeHttpResult { StatusCode: 200 }
                    ? Results.NoContent() : answer;
            })
            .WithName("ReleaseAdmissionLeases").WithSummary("Give back every lease of this serving node at once (when it stops), rather than after their TTL.")
            .Produces(204).ProducesProblem(403).ProducesProblem(503);

        group.MapGet("/{deploymentId}", async (string deploymentId, HttpContext http, ClaimsPrincipal user, IQuerySession session, AdmissionTable table,
                LeaseOwner owner, CancellationToken ct) =>
            {
                if (await table.FindAsync(deploymentId, ct) is not { } d)
                    return Results.Problem(statusCode: 404, title: "Not found", detail: $"No deployment '{deploymentId}'.");
                if (!user.IsInRole(nameof(Role.Operator)) && (await NodeOfAsync(user, session, ct) is not { } node || !node.MayServe(d))) return NotANode();
                return await OwnerAsync(http, owner, new LeaseAsk("", List: deploymentId), ct);
            })
            .WithName("ListAdmissionLeases").WithSummary("A deployment's live leases: who holds which share of its rate and burst, for what demand.")
            .Produces<IReadOnlyList<AdmissionLease>>().ProducesProblem(403).ProducesProblem(404).ProducesProblem(503);
        return app;
    }

    /// <summary>The lease owner's answer, or 503 when no owner answered: the node keeps its leases and renews again.</summary>
    static async Task<IResult> OwnerAsync(HttpContext http, LeaseOwner owner, LeaseAsk ask, CancellationToken ct)
    {
        try
        {
            return Results.Ok(await owner.AskAsync(ask, ct));
        }
        catch (Exception e) when (e is TimeoutException or RabbitMQ.Client.Exceptions.RabbitMQClientException)
        {
            http.Response.Headers.RetryAfter = "1";
            return Results.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "Lease owner not reachable",
                detail: "No host answered for the leases in time; keep admitting within the leases held and renew again.");
        }
    }

    /// <summary>What the node says it holds; nothing known if it does not say how much of the rate.</summary>
    static HeldShare? HeldOf(AdmissionDemand d) =>
        d.HeldTokensPerMinute is { } rate ? new HeldShare(rate, d.HeldBurstTokens ?? 0, d.HeldVersion ?? 0) : null;

    /// <summary>The serving node a key was issued for, unless revoked: a lease is always the caller's own.</summary>
    static async Task<ServingNode?> NodeOfAsync(ClaimsPrincipal user, IQuerySession session, CancellationToken ct) =>
        user.Producer() is { } producer && await session.LoadAsync<ServingNode>(ServingNode.StreamId(producer), ct) is { Revoked: false } node ? node : null;

    static IResult NotANode() => Results.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Not a registered serving node's key",
        detail: "Leases are held by serving nodes: use a key issued with the node's producer id as its name, for a registered node whose scope covers the deployment.");
}
