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

/// <summary>A deployment to buy: a model in a region, sized in PTUs.</summary>
/// <param name="Name">Your name for it, up to 100 characters; shown on invoices.</param>
/// <param name="Model">A model for sale (GET /v1/models).</param>
/// <param name="Region">A region with a pool of the model (GET /v1/capacity/regions).</param>
/// <param name="Type">Global, DataZone or Regional: where requests may be served, and the price list.</param>
/// <param name="Ptu">Provisioned throughput units: at least the model's minimum, in its increments (GET /v1/models).</param>
/// <param name="Spillover">Serve requests past the rate and bill them per token instead of refusing them.</param>
public sealed record PurchaseDeployment(string Name, string Model, string Region, DeploymentType Type, decimal Ptu, bool Spillover = false);

public static class Purchase
{
    public sealed class Validator : AbstractValidator<PurchaseDeployment>
    {
        public Validator(ModelCatalog catalog)
        {
            RuleFor(x => x.Name).Text(100);
            RuleFor(x => x.Model).NotEmpty().Must(m => catalog.Find(m) is not null).WithMessage("Unknown model; GET /v1/models lists them.");
            RuleFor(x => x.Region).NotEmpty().Matches("^[a-z][a-z0-9-]{1,31}$").WithMessage("Region must look like 'eastus' or 'sweden-central'.");
            RuleFor(x => x.Type).IsInEnum();
            RuleFor(x => x.Ptu).GreaterThan(0).LessThanOrEqualTo(100_000).PrecisionScale(12, 4, ignoreTrailingZeros: true);
        }
    }

    /// <summary>A purchase commits the deployment's first event and the pool's allocation together.</summary>
    public sealed record Decision(DeploymentCreated Created, IReadOnlyList<PoolEvent> PoolEvents);

    public static Decision Decide(Tenant tenant, ModelEntry model, CapacityPool? pool, PurchaseDeployment command, string deploymentId, int burstSeconds, DateTimeOffset now)
    {
        var created = Create(tenant, model, command, deploymentId, burstSeconds, now);
        return new Decision(created, PoolDecisions.Allocate(pool, command.Model, command.Region, deploymentId, command.Ptu, now));
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

    static bool SameRequest(Deployment d, PurchaseDeployment c) =>
        d.Name == c.Name && d.Model == c.Model && d.Region == c.Region && d.Type == c.Type && d.Ptu == c.Ptu;

    public static RouteGroupBuilder MapPurchase(this RouteGroupBuilder group, ModelCatalog catalog)
    {
        group.MapPost("/", async Task<Results<Created<DeploymentView>, ProblemHttpResult>> (PurchaseDeployment command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var (key, badKey) = IdempotencyKeys.Of(http);
                if (badKey is not null) return badKey;
                var deploymentId = DeploymentIdFor(tenantId, key);

                if (key is not null && await session.LoadAsync<Deployment>(deploymentId, ct) is { } earlier)
                    return Replay(http, earlier, command);

                var tenant = await session.LoadAsync<Tenant>(tenantId, ct) ?? throw RuleViolation.NotFound($"No tenant '{tenantId}'.");
                // The row lock on the pool stream serialises concurrent purchases: no retry storm, no overselling.
                var pool = await session.Events.FetchForExclusiveWriting<CapacityPool>(CapacityPool.StreamId(command.Model, command.Region), ct);
                var (created, poolEvents) = Decide(tenant, catalog.Find(command.Model)!, pool.Aggregate, command, deploymentId, catalog.BurstSecondsFor(command.Type), clock.GetUtcNow());
                pool.AppendMany(poolEvents);
                session.Events.StartStream<Deployment>(deploymentId, created);
                try
                {
                    await session.SaveChangesAsync(ct);
                }
                catch (Marten.Exceptions.ExistingStreamIdCollisionException) when (key is not null)
                {
                    await using var fresh = session.DocumentStore.QuerySession();
                    return Replay(http, (await fresh.LoadAsync<Deployment>(deploymentId, ct))!, command);
                }
                var deployment = Deployment.Create(created);
                ETags.Set(http, deployment.Revision);
                return TypedResults.Created($"/v1/deployments/{deploymentId}", DeploymentView.Of(deployment, created.CreatedAt));
            })
            .ValidateWith(new Validator(catalog))
            .WithName("PurchaseDeployment").WithHeader(ContractHeader.IdempotencyKey).WithHeader(ContractHeader.ETag)
            .WithSummary("Buy PTUs for a new deployment. Send Idempotency-Key so that a retry never buys twice.")
            .ProducesProblem(409).ProducesProblem(422);
        return group;

        static Results<Created<DeploymentView>, ProblemHttpResult> Replay(HttpContext http, Deployment earlier, PurchaseDeployment command)
        {
            if (!SameRequest(earlier, command))
                return IdempotencyKeys.Reused("purchase");
            ETags.Set(http, earlier.Revision);
            return TypedResults.Created($"/v1/deployments/{earlier.Id}", DeploymentView.Of(earlier, earlier.BucketAt));
        }
    }
}
