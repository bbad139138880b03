using FluentValidation;
using Marten;
using Marten.Linq.MatchesSql;
using Throughput.Access;
using Throughput.Catalog;
using Throughput.Http;

namespace Throughput.Tenants;

/// <summary>A new tenant (a customer account).</summary>
/// <param name="TenantId">3–40 lower-case letters, digits or '-', starting with a letter; fixed for good.</param>
/// <param name="Name">The customer's name, as invoices address it: up to 200 characters.</param>
/// <param name="Currency">What it is billed in: a currency the catalog prices in (USD, EUR).</param>
public sealed record CreateTenant(string TenantId, string Name, string Currency);

/// <summary>A suspension: the tenant buys nothing and its deployments admit nothing until it is reinstated.</summary>
/// <param name="Reason">Why, for the audit trail.</param>
public sealed record SuspendTenant(string Reason);

/// <param name="Id">The tenant's id.</param>
/// <param name="Name">Its name, the invoices' bill-to.</param>
/// <param name="Currency">The ISO 4217 currency it is billed in.</param>
/// <param name="Status">Active, or Suspended (nothing admitted).</param>
/// <param name="ActiveKeys">The ids of its API keys not revoked.</param>
/// <param name="CreatedAt">When it was created.</param>
/// <param name="Version">Its stream version.</param>
public sealed record TenantView(string Id, string Name, string Currency, TenantStatus Status, IReadOnlyList<string> ActiveKeys, DateTimeOffset CreatedAt, long Version)
{
    public static TenantView Of(Tenant t) => new(t.Id, t.Name, t.Currency, t.Status, [.. t.ActiveKeys], t.CreatedAt, t.Version);
}

/// <summary>Operator slices: tenants, their keys, suspension.</summary>
public static class ManageTenants
{
    static readonly Column<TenantView>[] TenantColumns =
    [
        new("id", t => t.Id), new("name", t => t.Name), new("currency", t => t.Currency), new("status", t => t.Status.ToString()),
        new("created_at", t => Tables.Instant(t.CreatedAt)),
    ];

    public sealed class CreateValidator : AbstractValidator<CreateTenant>
    {
        public CreateValidator(ModelCatalog catalog)
        {
            var currencies = catalog.Models.SelectMany(m => m.Prices.Keys).ToHashSet();
            RuleFor(x => x.TenantId).NotEmpty().Matches("^[a-z][a-z0-9-]{2,39}$").WithMessage("Tenant id: 3–40 lower-case letters, digits or '-', starting with a letter.");
            RuleFor(x => x.TenantId).Must(id => id is null || !Tenant.IsReservedId(id))
                .WithMessage("Tenant id: 'staff', 'invoice-register' and ids starting 'dep-', 'res-' or 'inv-' name the platform's own records.");
            RuleFor(x => x.Name).Text(200);
            RuleFor(x => x.Currency).NotEmpty().Must(currencies.Contains).WithMessage($"Currency must be one the catalog prices in: {string.Join(", ", currencies.Order())}.");
        }
    }

    public sealed class SuspendValidator : AbstractValidator<SuspendTenant>
    {
        public SuspendValidator() => RuleFor(x => x.Reason).Text(500, lines: true);
    }

    static async Task<Tenant> LoadAsync(IQuerySession session, string tenantId, CancellationToken ct) =>
        await session.LoadAsync<Tenant>(tenantId, ct) ?? throw RuleViolation.NotFound($"No tenant '{tenantId}'.");

    public static IEndpointRouteBuilder MapManageTenants(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        var group = app.MapGroup("/v1/operator/tenants").RequireAuthorization(Policies.Operator).WithTags("Operator: tenants");

        group.MapPost("/", async Task<Results<Created<TenantView>, Ok<TenantView>>> (CreateTenant command, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var existing = await session.LoadAsync<Tenant>(command.TenantId, ct);
                var events = TenantDecisions.Create(existing, command.TenantId, command.Name, command.Currency, clock.GetUtcNow());
                if (events.Length == 0) return TypedResults.Ok(TenantView.Of(existing!));
                session.Events.StartStream<Tenant>(Tenant.StreamId(command.TenantId), events);
                await session.SaveChangesAsync(ct);
                return TypedResults.Created($"/v1/operator/tenants/{command.TenantId}", TenantView.Of(Tenant.Create((TenantCreated)events[0]) with { Version = 1 }));
            })
            .ValidateWith(new CreateValidator(catalog))
            .WithName("CreateTenant").WithSummary("Create a customer account. Repeating the same request is harmless (the tenant id is the idempotency key).")
            .ProducesProblem(409);

        group.MapGet("/", async (string? after, int? limit, HttpContext http, IQuerySession session, CancellationToken ct) =>
                await Tables.RespondPagedAsync(http, after, limit, async (from, take, token) =>
                        (await session.Query<Tenant>().Where(t => t.MatchesSql("d.id > ?", from)).OrderBy(t => t.Id).Take(take).ToListAsync(token)).Select(TenantView.Of).ToList(),
                    t => t.Id, "tenants", TenantColumns, ct))
            .WithName("ListTenants")
            .WithSummary("Every tenant, by id: JSON in pages (?limit=, default 500, at most 5,000; ?after= the last id of the previous page; Link rel=next), or all as CSV.")
            .Produces<IReadOnlyList<TenantView>>(200, "application/json", "text/csv").ProducesValidationProblem();

        group.MapGet("/{tenantId}", async (string tenantId, IQuerySession session, CancellationToken ct) =>
                TypedResults.Ok(TenantView.Of(await LoadAsync(session, tenantId, ct))))
            .WithName("GetTenant").ProducesProblem(404);

        group.MapPost("/{tenantId}/keys", async Task<Results<Created<IssuedApiKey>, ProblemHttpResult>> (string tenantId, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenant = await LoadAsync(session, tenantId, ct);
                var (idempotencyKey, badKey) = IdempotencyKeys.Of(http);
                if (badKey is not null) return badKey;
                var keyId = idempotencyKey is null ? ApiKeySecrets.NewKeyId() : ApiKeySecrets.KeyIdFor(tenantId, idempotencyKey);
                var secret = ApiKeySecrets.NewSecret();
                session.Events.Append(tenant.Id, tenant.Version + 1, TenantDecisions.IssueKey(tenant, keyId, ApiKeySecrets.Hash(secret), clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                return TypedResults.Created($"/v1/operator/tenants/{tenantId}/keys/{keyId}", new IssuedApiKey(keyId, Role.Tenant, ApiKeySecrets.Token(keyId, secret)));
            })
            .WithName("IssueTenantKey").WithHeader(ContractHeader.IdempotencyKey).WithSummary("Issue an API key for the tenant. The secret is returned once; a retry with the same Idempotency-Key is refused rather than shown again.")
            .ProducesProblem(404).ProducesProblem(409);

        group.MapDelete("/{tenantId}/keys/{keyId}", async (string tenantId, string keyId, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenant = await LoadAsync(session, tenantId, ct);
                session.Events.Append(tenant.Id, tenant.Version + 1, TenantDecisions.RevokeKey(tenant, keyId, clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                return TypedResults.NoContent();
            })
            .WithName("RevokeTenantKey").ProducesProblem(404);

        group.MapPost("/{tenantId}/suspend", async (string tenantId, SuspendTenant command, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
                await Change(session, tenantId, t => TenantDecisions.Suspend(t, command.Reason, clock.GetUtcNow()), ct))
            .ValidateWith(new SuspendValidator())
            .WithName("SuspendTenant").WithSummary("Stop the tenant buying; its deployments' admission state becomes suspended.")
            .ProducesProblem(404);

        group.MapPost("/{tenantId}/reinstate", async (string tenantId, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
                await Change(session, tenantId, t => TenantDecisions.Reinstate(t, clock.GetUtcNow()), ct))
            .WithName("ReinstateTenant").ProducesProblem(404);
        return app;
    }

    static async Task<Ok<TenantView>> Change(IDocumentSession session, string tenantId, Func<Tenant, TenantEvent[]> decide, CancellationToken ct)
    {
        var stream = await session.Events.FetchForWriting<Tenant>(tenantId, ct);
        if (stream.Aggregate is null) throw RuleViolation.NotFound($"No tenant '{tenantId}'.");
        var events = decide(stream.Aggregate);
        stream.AppendMany(events);
        await session.SaveChangesAsync(ct);
        var tenant = events.Aggregate(stream.Aggregate, (t, e) => t.Then(e));
        return TypedResults.Ok(TenantView.Of(tenant with { Version = stream.Aggregate.Version + events.Length }));
    }
}
