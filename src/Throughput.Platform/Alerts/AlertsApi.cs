using System.Security.Cryptography;
using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Alerts;

/// <summary>An alert to create, or what to change an alert to (docs/alerts.md).</summary>
/// <param name="Metric">What to watch, month to date (UTC): Utilization (served ÷ purchased, a ratio), SpilloverSpend or InvoiceToDate (the month's draft invoice total so far), both in your currency.</param>
/// <param name="Threshold">The value that crosses: a ratio above 0 and at most 10 for Utilization (0.8 = 80 %), an amount above 0 for SpilloverSpend and InvoiceToDate.</param>
/// <param name="DeploymentId">The deployment to watch; omitted: all your deployments together.</param>
/// <param name="CapsSpillover">SpilloverSpend only: once crossed, spillover stops for the rest of the month, and spilled usage past it is not billed.</param>
/// <param name="Name">Your note on what the alert is for, up to 200 characters.</param>
public sealed record SetAlert(AlertMetric Metric, decimal Threshold, string? DeploymentId = null, bool CapsSpillover = false, string? Name = null);

/// <summary>An alert as its tenant sees it.</summary>
/// <param name="Id">The alert's id.</param>
/// <param name="Metric">What it watches, month to date.</param>
/// <param name="Threshold">The value that crosses it.</param>
/// <param name="DeploymentId">The deployment it watches; null: all the tenant's deployments together.</param>
/// <param name="CapsSpillover">Whether crossing it stops spillover for the rest of the month.</param>
/// <param name="Name">The tenant's note.</param>
/// <param name="SetAt">When it was created or last changed.</param>
/// <param name="CrossedIn">The month (yyyy-MM, UTC) it is crossed in; null: armed, the next reaching of the threshold fires it.</param>
/// <param name="LastCrossedAt">When it last crossed; null: never.</param>
/// <param name="LastCrossedValue">The watched value when it last crossed.</param>
public sealed record AlertView(string Id, AlertMetric Metric, decimal Threshold, string? DeploymentId, bool CapsSpillover, string? Name, DateTimeOffset SetAt,
    string? CrossedIn, DateTimeOffset? LastCrossedAt, decimal? LastCrossedValue)
{
    public static AlertView Of(Alert a) => new(a.Id, a.Metric, a.Threshold, a.DeploymentId, a.CapsSpillover, a.Name, a.SetAt, a.CrossedIn, a.LastCrossedAt, a.LastCrossedValue);
}

/// <summary>A tenant's alerts and spillover caps; another tenant's alert is answered 404, as if it did not exist.</summary>
public static class AlertsApi
{
    /// <summary>The most a utilization threshold may be: served can pass purchased only by spilling, and not tenfold.</summary>
    public const decimal MaxUtilization = 10;

    public sealed class Validator : AbstractValidator<SetAlert>
    {
        public Validator()
        {
            RuleFor(x => x.Metric).IsInEnum();
            RuleFor(x => x.Threshold).GreaterThan(0);
            RuleFor(x => x.Threshold).LessThanOrEqualTo(MaxUtilization).When(x => x.Metric == AlertMetric.Utilization)
                .WithMessage($"A utilization threshold is a ratio: at most {MaxUtilization} (0.8 = 80 %).");
            RuleFor(x => x.CapsSpillover).Equal(false).When(x => x.Metric != AlertMetric.SpilloverSpend)
                .WithMessage("Only a SpilloverSpend alert can cap spillover.");
            RuleFor(x => x.DeploymentId!).NotEmpty().MaximumLength(100).When(x => x.DeploymentId is not null);
            RuleFor(x => x.Name!).Text(200).When(x => x.Name is not null);
        }
    }

    public static IEndpointRouteBuilder MapAlerts(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/alerts").WithTags("Alerts").RequireAuthorization(Policies.Tenant);
        var validator = new Validator();

        group.MapPost("/", async Task<Results<Created<AlertView>, ProblemHttpResult>> (SetAlert command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var (idempotencyKey, badKey) = IdempotencyKeys.Of(http);
                if (badKey is not null) return badKey;
                var tenantId = http.User.TenantId()!;
                if (await DeploymentProblemAsync(session, tenantId, command, ct) is { } problem) return problem;
                var alertId = idempotencyKey is null ? "alr_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(10)) : IdempotencyKeys.IdFor("alr_", tenantId, idempotencyKey);
                // A retry gets the alert it set; a key used for another alert is refused.
                if (idempotencyKey is not null && await session.LoadAsync<Alert>(alertId, ct) is { } earlier)
                    return earlier.TenantId == tenantId && Set(alertId, tenantId, command, earlier.SetAt) == Set(alertId, earlier.TenantId, AsCommand(earlier), earlier.SetAt)
                        ? TypedResults.Created($"/v1/alerts/{alertId}", AlertView.Of(earlier))
                        : IdempotencyKeys.Reused("alert");
                var set = Set(alertId, tenantId, command, clock.GetUtcNow());
                session.Events.StartStream<Alert>(set.AlertId, set);
                await session.SaveChangesAsync(ct);
                return TypedResults.Created($"/v1/alerts/{set.AlertId}", AlertView.Of(Alert.Create(set)));
            })
            .ValidateWith(validator).ProducesProblem(422)
            .WithName("CreateAlert").WithHeader(ContractHeader.IdempotencyKey)
            .WithSummary("Alert when a month-to-date value (utilization, spillover spend, invoice to date) reaches a threshold (a webhook and the dashboard); a spillover spend alert can also cap spillover.");

        group.MapGet("/", async (HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId();
                var alerts = await session.Query<Alert>().Where(a => a.TenantId == tenantId && !a.Removed).OrderBy(a => a.SetAt).ToListAsync(ct);
                return TypedResults.Ok(alerts.Select(AlertView.Of).ToList());
            })
            .WithName("ListAlerts").WithSummary("Your alerts and caps, each with the month it is crossed in.");

        group.MapGet("/{alertId}", async (string alertId, HttpContext http, IQuerySession session, CancellationToken ct) =>
                TypedResults.Ok(AlertView.Of(await OwnAsync(session, http, alertId, ct))))
            .WithName("GetAlert").WithSummary("One of your alerts.").ProducesProblem(404);

        group.MapPut("/{alertId}", async Task<Results<Ok<AlertView>, ProblemHttpResult>> (string alertId, SetAlert command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var alert = await OwnAsync(session, http, alertId, ct);
                if (await DeploymentProblemAsync(session, alert.TenantId, command, ct) is { } problem) return problem;
                var set = Set(alert.Id, alert.TenantId, command, clock.GetUtcNow());
                session.Events.Append(alert.Id, set);
                await session.SaveChangesAsync(ct);
                return TypedResults.Ok(AlertView.Of(alert.Apply(set)));
            })
            .ValidateWith(validator).ProducesProblem(404).ProducesProblem(422)
            .WithName("ChangeAlert").WithSummary("Change an alert: it is armed again, and a cap it set is lifted until it crosses again.");

        group.MapDelete("/{alertId}", async (string alertId, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var alert = await OwnAsync(session, http, alertId, ct);
                session.Events.Append(alert.Id, new AlertRemoved(alert.Id, clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                return TypedResults.NoContent();
            })
            .WithName("RemoveAlert").WithSummary("Remove an alert; a cap it set is lifted.").ProducesProblem(404);
        return app;
    }

    static SetAlert AsCommand(Alert a) => new(a.Metric, a.Threshold, a.DeploymentId, a.CapsSpillover, a.Name);

    static AlertSet Set(string alertId, string tenantId, SetAlert c, DateTimeOffset now) =>
        new(alertId, tenantId, c.DeploymentId, c.Metric, c.Threshold, c.CapsSpillover, c.Name, now);

    /// <summary>A named deployment must be one of the tenant's own (another tenant's reads as unknown).</summary>
    static async Task<ProblemHttpResult?> DeploymentProblemAsync(IQuerySession session, string tenantId, SetAlert command, CancellationToken ct) =>
        command.DeploymentId is { } id && (await session.LoadAsync<Deployment>(id, ct))?.TenantId != tenantId
            ? Validation.Invalid(new Dictionary<string, string[]> { ["deploymentId"] = [$"You have no deployment '{id}'."] }, 422)
            : null;

    static async Task<Alert> OwnAsync(IQuerySession session, HttpContext http, string alertId, CancellationToken ct) =>
        await session.LoadAsync<Alert>(alertId, ct) is { Removed: false } a && a.TenantId == http.User.TenantId()
            ? a
            : throw RuleViolation.NotFound($"No alert '{alertId}'.");
}
