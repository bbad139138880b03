using System.Security.Cryptography;
using System.Text;
using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Catalog;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Reservations;

/// <summary>An event of a reservation's stream.</summary>
public abstract record ReservationEvent(string ReservationId);

public sealed record ReservationPurchased(
    string ReservationId,
    string TenantId,
    string Model,
    string Region,
    DeploymentType Type,
    decimal Ptu,
    ReservationTerm Term,
    decimal PricePerPtu,
    string Currency,
    DateTimeOffset StartsAt,
    DateTimeOffset EndsAt) : ReservationEvent(ReservationId);

public sealed record ReservationCancelled(string ReservationId, DateTimeOffset CancelledAt) : ReservationEvent(ReservationId);

/// <summary>
/// A commitment to N PTUs of one model in one region for a month or a year, paid whether used or not.
/// It covers that many deployed PTUs of the model in the region, which are then not billed hourly.
/// </summary>
/// <param name="Id">The reservation's id.</param>
/// <param name="TenantId">The tenant that bought it.</param>
/// <param name="Model">The catalog model reserved.</param>
/// <param name="Region">The region reserved.</param>
/// <param name="Type">The deployment type it covers.</param>
/// <param name="Ptu">The PTUs reserved.</param>
/// <param name="Term">Month (paid at its start) or Year (12 monthly installments).</param>
/// <param name="PricePerPtu">The price per PTU for the whole term, fixed at purchase.</param>
/// <param name="Currency">The currency it is billed in.</param>
/// <param name="StartsAt">When it starts covering deployed PTUs.</param>
/// <param name="EndsAt">When it stops covering them.</param>
/// <param name="CancelledAt">When it was cancelled; null otherwise.</param>
/// <param name="Version">Its stream version.</param>
public sealed record Reservation(
    string Id,
    string TenantId,
    string Model,
    string Region,
    DeploymentType Type,
    decimal Ptu,
    ReservationTerm Term,
    decimal PricePerPtu,
    string Currency,
    DateTimeOffset StartsAt,
    DateTimeOffset EndsAt,
    DateTimeOffset? CancelledAt,
    long Version)
{
    public static Reservation Create(ReservationPurchased e) =>
        new(e.ReservationId, e.TenantId, e.Model, e.Region, e.Type, e.Ptu, e.Term, e.PricePerPtu, e.Currency, e.StartsAt, e.EndsAt, null, 0);

    public Reservation Apply(ReservationCancelled e) => this with { CancelledAt = e.CancelledAt };

    /// <summary>The state after more events of the reservation's stream (Marten's snapshot calls Create and Apply itself).</summary>
    public Reservation Then(IEnumerable<ReservationEvent> events) => events.Aggregate(this, (r, e) => e switch
    {
        ReservationCancelled cancelled => r.Apply(cancelled),
        _ => throw new ArgumentOutOfRangeException(nameof(events), e.GetType().Name, "not an event that follows a reservation's purchase"),
    });

    public bool IsActiveAt(DateTimeOffset at) => at >= StartsAt && at < EndsAt;
}

/// <summary>A reservation to buy: PTUs of a model, region and type paid for a term, covering that many deployed PTUs.</summary>
/// <param name="Model">A model of the catalog, e.g. <c>gpt-4o</c>.</param>
/// <param name="Region">The region its deployments run in, e.g. <c>eastus</c>.</param>
/// <param name="Type">Global, DataZone or Regional.</param>
/// <param name="Ptu">PTUs reserved: more than 0, at most 100,000, at most 4 decimals.</param>
/// <param name="Term">Month (paid at its start) or Year (12 monthly instalments).</param>
public sealed record PurchaseReservation(string Model, string Region, DeploymentType Type, decimal Ptu, ReservationTerm Term);

public static class Reserve
{
    public sealed class Validator : AbstractValidator<PurchaseReservation>
    {
        public Validator(ModelCatalog catalog)
        {
            RuleFor(x => x.Model).NotEmpty().Must(m => catalog.Find(m) is not null).WithMessage("Unknown model; GET /v1/models lists them.");
            RuleFor(x => x.Region).NotEmpty().Matches("^[a-z][a-z0-9-]{1,31}$").WithMessage("Region must look like 'eastus' or 'sweden-central'.");
            RuleFor(x => x.Type).IsInEnum();
            RuleFor(x => x.Term).IsInEnum();
            RuleFor(x => x.Ptu).GreaterThan(0).LessThanOrEqualTo(100_000).PrecisionScale(12, 4, ignoreTrailingZeros: true);
        }
    }

    public static ReservationPurchased Decide(Tenant tenant, ModelEntry model, PurchaseReservation command, string reservationId, DateTimeOffset now)
    {
        tenant.EnsureActive();
        if (!model.IsValidAmount(command.Ptu))
            throw RuleViolation.Unprocessable($"{command.Ptu} PTU is not sellable for {model.Name}: the minimum is {model.MinimumPtu} PTU in steps of {model.PtuIncrement}.");
        if (!model.Prices.TryGetValue(tenant.Currency, out var prices))
            throw RuleViolation.Unprocessable($"{model.Name} has no price in {tenant.Currency}, the tenant's currency.");
        var ends = command.Term == ReservationTerm.Month ? now.AddMonths(1) : now.AddYears(1);
        return new ReservationPurchased(reservationId, tenant.Id, model.Name, command.Region, command.Type, command.Ptu, command.Term,
            prices.ReservationPerPtu(command.Term), tenant.Currency, now, ends);
    }

    public static ReservationEvent[] Cancel(Reservation reservation, DateTimeOffset now)
    {
        if (reservation.CancelledAt is not null) return [];
        if (now < reservation.EndsAt)
            throw RuleViolation.Conflict($"Reservation '{reservation.Id}' runs until {reservation.EndsAt:u}; it cannot be cancelled before its term ends.");
        return [new ReservationCancelled(reservation.Id, now)];
    }

    static bool SameRequest(Reservation earlier, PurchaseReservation command) =>
        earlier.Model == command.Model && earlier.Region == command.Region && earlier.Type == command.Type && earlier.Ptu == command.Ptu && earlier.Term == command.Term;

    public static string ReservationIdFor(string tenantId, string? key) => key is null
        ? "res-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(10))
        : "res-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(tenantId + "\n" + key)))[..20];

    static async Task<Reservation> LoadOwnedAsync(IQuerySession session, string id, string tenantId, CancellationToken ct) =>
        await session.LoadAsync<Reservation>(id, ct) is { } r && r.TenantId == tenantId ? r : throw RuleViolation.NotFound($"No reservation '{id}'.");

    public static IEndpointRouteBuilder MapReservations(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        var group = app.MapGroup("/v1/reservations").RequireAuthorization(Policies.Tenant).WithTags("Reservations");

        group.MapPost("/", async Task<Results<Created<Reservation>, ProblemHttpResult>> (PurchaseReservation command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var (key, badKey) = IdempotencyKeys.Of(http);
                if (badKey is not null) return badKey;
                var id = ReservationIdFor(tenantId, key);
                if (key is not null && await session.LoadAsync<Reservation>(id, ct) is { } earlier)
                    return SameRequest(earlier, command) ? TypedResults.Created($"/v1/reservations/{id}", earlier) : IdempotencyKeys.Reused("reservation");
                var tenant = await session.LoadAsync<Tenant>(tenantId, ct) ?? throw RuleViolation.NotFound($"No tenant '{tenantId}'.");
                var purchased = Decide(tenant, catalog.Find(command.Model, command.Type)!, command, id, clock.GetUtcNow());
                session.Events.StartStream<Reservation>(id, purchased);
                await session.SaveChangesAsync(ct);
                return TypedResults.Created($"/v1/reservations/{id}", Reservation.Create(purchased) with { Version = 1 });
            })
            .ValidateWith(new Validator(catalog))
            .WithName("PurchaseReservation").WithHeader(ContractHeader.IdempotencyKey).WithSummary("Commit to PTUs for a month or a year at the reservation price.")
            .ProducesProblem(409).ProducesProblem(422);

        group.MapGet("/", async (HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                return TypedResults.Ok(await session.Query<Reservation>().Where(r => r.TenantId == tenantId).OrderBy(r => r.StartsAt).ToListAsync(ct));
            })
            .WithName("ListReservations");

        group.MapGet("/{reservationId}", async (string reservationId, HttpContext http, IQuerySession session, CancellationToken ct) =>
                TypedResults.Ok(await LoadOwnedAsync(session, reservationId, http.User.TenantId()!, ct)))
            .WithName("GetReservation").ProducesProblem(404);

        group.MapPost("/{reservationId}/cancel", async (string reservationId, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var reservation = await LoadOwnedAsync(session, reservationId, http.User.TenantId()!, ct);
                var events = Cancel(reservation, clock.GetUtcNow());
                if (events.Length > 0)
                {
                    session.Events.Append(reservationId, events);
                    await session.SaveChangesAsync(ct);
                }
                return TypedResults.Ok(reservation.Then(events));
            })
            .WithName("CancelReservation").WithSummary("Only after the term has ended.")
            .ProducesProblem(404).ProducesProblem(409);
        return app;
    }
}
