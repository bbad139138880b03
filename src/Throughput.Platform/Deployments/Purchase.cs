using System.Security.Cryptography;
using System.Text;
using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Deployments;

/// <summary>What every purchase names besides its model: a deployment of the base model, of an adapter, or of an adapter set.</summary>
public interface IPurchaseTerms
{
    string Name { get; }
    string Region { get; }
    DeploymentType Type { get; }
    decimal Ptu { get; }
}

/// <summary>A deployment to buy: PTUs of one model in one region, billed per second from now at today's catalog price in the tenant's currency.</summary>
/// <param name="Name">What the tenant calls it: up to 100 characters, no control characters.</param>
/// <param name="Model">A model of the catalog (<c>GET /v1/models</c>), e.g. <c>gpt-4o-mini</c>.</param>
/// <param name="Region">A region with a pool of the model and room for the PTUs (<c>GET /v1/capacity/regions?model=&amp;ptu=</c>), e.g. <c>westus</c>.</param>
/// <param name="Type">Global, DataZone or Regional.</param>
/// <param name="Ptu">Provisioned throughput units, more than 0 and at most 100,000, at most 4 decimals; the model's minimum and increment apply.</param>
/// <param name="Spillover">Serve requests above the purchased rate instead of throttling them, billed per 1M tokens.</param>
public sealed record PurchaseDeployment(string Name, string Model, string Region, DeploymentType Type, decimal Ptu, bool Spillover = false) : IPurchaseTerms;

public static class Purchase
{
    public sealed class TermsValidator : AbstractValidator<IPurchaseTerms>
    {
        public TermsValidator()
        {
            RuleFor(x => x.Name).Text(100);
            RuleFor(x => x.Region).NotEmpty().Matches("^[a-z][a-z0-9-]{1,31}$").WithMessage("Region must look like 'eastus' or 'sweden-central'.");
            RuleFor(x => x.Type).IsInEnum();
            RuleFor(x => x.Ptu).GreaterThan(0).LessThanOrEqualTo(100_000).PrecisionScale(12, 4, ignoreTrailingZeros: true);
        }
    }

    public sealed class Validator : AbstractValidator<PurchaseDeployment>
    {
        public Validator(ModelCatalog catalog)
        {
            Include(new TermsValidator());
            RuleFor(x => x.Model).NotEmpty().Must(m => catalog.Find(m) is not null).WithMessage("Unknown model; GET /v1/models lists them.");
        }
    }

    /// <summary>A purchase commits the deployment's first events and the pools' allocations together.</summary>
    public sealed record Decision(DeploymentCreated Created, IReadOnlyList<PoolEvent> PoolEvents, DeploymentPlaced? Placed = null)
    {
        public IReadOnlyList<DeploymentEvent> Events => Placed is null ? [Created] : [Created, Placed];
    }

    /// <param name="model">The model as the catalog sells the command's deployment type (its prices are the type's).</param>
    /// <param name="regions">Where the deployment may be placed (<see cref="ModelCatalog.PlacementRegions"/>).</param>
    /// <param name="pools">The existing pools of those regions.</param>
    public static Decision Decide(Tenant tenant, ModelEntry model, IReadOnlyList<string> regions, IReadOnlyList<CapacityPool> pools, PurchaseDeployment command, string deploymentId, int burstSeconds, DateTimeOffset now,
        DeploymentAdapters? adapters = null)
    {
        var created = Create(tenant, model, command, deploymentId, burstSeconds, now) with { Adapters = adapters };
        if (regions.Count == 1)
            return new Decision(created, PoolDecisions.Allocate(pools.SingleOrDefault(), command.Model, command.Region, deploymentId, command.Ptu, now));
        if (pools.Count == 0)
            throw RuleViolation.Conflict($"No capacity is registered for {command.Model} in {string.Join(", ", regions)}.");
        var placed = Placement.Place(pools, [], command.Region, deploymentId, command.Ptu, now);
        if (placed.UnplacedPtu > 0)
            throw RuleViolation.Conflict($"The pools of {command.Model} in {string.Join(", ", pools.Select(p => p.Region))} are exhausted: {pools.Sum(p => Math.Max(0, p.Free))} PTU free in all, {command.Ptu} PTU requested.");
        return new Decision(created, placed.PoolEvents, new DeploymentPlaced(deploymentId, placed.Shares, 0, "purchase", now));
    }

    static DeploymentCreated Create(Tenant tenant, ModelEntry model, PurchaseDeployment command, string deploymentId, int burstSeconds, DateTimeOffset now)
    {
        tenant.EnsureActive();
        if (!model.IsValidAmount(command.Ptu))
            throw RuleViolation.Unprocessable($"{command.Ptu} PTU is not sellable for {model.Name}: the minimum is {model.MinimumPtu} PTU in steps of {model.PtuIncrement}.");
        // The prices are copied into the event: invoices rebuilt later must not follow a catalog change.
        if (!model.Prices.TryGetValue(tenant.Currency, out var prices))
            throw RuleViolation.Unprocessable($"{model.Name} has no price in {tenant.Currency}, the tenant's currency.");
        return new DeploymentCreated(deploymentId, tenant.Id, command.Name, model.Name, command.Region, command.Type, command.Ptu,
            model.InputTokensPerMinutePerPtu, model.OutputWeight, model.CachedDeduction, burstSeconds, command.Spillover, tenant.Currency, prices, now);
    }

    /// <summary>A retried purchase with the same Idempotency-Key maps to the same stream id, so the event store refuses a second one.</summary>
    public static string DeploymentIdFor(string tenantId, string? idempotencyKey) => idempotencyKey is null
        ? "dep-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(10))
        : "dep-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(tenantId + "\n" + idempotencyKey)))[..20];

    static bool SameRequest(Deployment d, PurchaseDeployment c, DeploymentAdapters? adapters) =>
        d.Name == c.Name && d.Model == c.Model && d.Region == c.Region && d.Type == c.Type && d.Ptu == c.Ptu
        && d.Adapters?.Shared == adapters?.Shared && (d.Adapters?.Caps ?? Empty).OrderBy(a => a.Key, StringComparer.Ordinal)
            .SequenceEqual((adapters?.Caps ?? Empty).OrderBy(a => a.Key, StringComparer.Ordinal));

    static readonly Dictionary<string, decimal?> Empty = [];

    public static RouteGroupBuilder MapPurchase(this RouteGroupBuilder group, ModelCatalog catalog)
    {
        group.MapPost("/", (PurchaseDeployment command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
                BuyAsync(command, null, http, session, catalog, clock, ct))
            .ValidateWith(new Validator(catalog))
            .WithName("PurchaseDeployment").WithHeader(ContractHeader.IdempotencyKey).WithHeader(ContractHeader.ETag)
            .WithSummary("Buy PTUs for a new deployment. Send Idempotency-Key so that a retry never buys twice.")
            .ProducesProblem(409).ProducesProblem(422);
        return group;
    }

    /// <summary>
    /// Buys a deployment: of the base model, or (with <paramref name="adapters"/>, which the Adapters feature has checked
    /// are the tenant's and of this model) serving adapters. One purchase path for both, so they draw from one pool.
    /// </summary>
    public static async Task<Results<Created<DeploymentView>, ProblemHttpResult>> BuyAsync(PurchaseDeployment command, DeploymentAdapters? adapters, HttpContext http,
        IDocumentSession session, ModelCatalog catalog, TimeProvider clock, CancellationToken ct)
    {
        var tenantId = http.User.TenantId()!;
        var (key, badKey) = IdempotencyKeys.Of(http);
        if (badKey is not null) return badKey;
        var deploymentId = DeploymentIdFor(tenantId, key);

        if (key is not null && await session.LoadAsync<Deployment>(deploymentId, ct) is { } earlier)
            return Replay(http, earlier, command, adapters);

        var tenant = await session.LoadAsync<Tenant>(tenantId, ct) ?? throw RuleViolation.NotFound($"No tenant '{tenantId}'.");
        // The row locks on the pool streams serialise concurrent purchases: no retry storm, no overselling.
        var regions = catalog.PlacementRegions(command.Type, command.Region);
        var pools = await PoolLocks.LockAsync(session, command.Model, regions, ct);
        var decision = Decide(tenant, catalog.Find(command.Model, command.Type)!, regions, pools.Pools(), command, deploymentId, catalog.BurstSecondsFor(command.Type), clock.GetUtcNow(), adapters);
        pools.Append(decision.PoolEvents);
        session.Events.StartStream<Deployment>(deploymentId, [.. decision.Events]);
        try
        {
            await session.SaveChangesAsync(ct);
        }
        catch (Marten.Exceptions.ExistingStreamIdCollisionException) when (key is not null)
        {
            await using var fresh = session.DocumentStore.QuerySession();
            return Replay(http, (await fresh.LoadAsync<Deployment>(deploymentId, ct))!, command, adapters);
        }
        var deployment = Deployment.Create(decision.Created).Then(decision.Events.Skip(1));
        ETags.Set(http, deployment.Revision);
        return TypedResults.Created($"/v1/deployments/{deploymentId}", DeploymentView.Of(deployment, decision.Created.CreatedAt));

        static Results<Created<DeploymentView>, ProblemHttpResult> Replay(HttpContext http, Deployment earlier, PurchaseDeployment command, DeploymentAdapters? adapters)
        {
            if (!SameRequest(earlier, command, adapters))
                return IdempotencyKeys.Reused("purchase");
            ETags.Set(http, earlier.Revision);
            return TypedResults.Created($"/v1/deployments/{earlier.Id}", DeploymentView.Of(earlier, earlier.BucketAt));
        }
    }
}
