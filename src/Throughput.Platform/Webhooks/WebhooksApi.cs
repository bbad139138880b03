using System.Security.Cryptography;
using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Http;

namespace Throughput.Webhooks;

/// <summary>A receiver to register for some event types (docs/webhooks.md).</summary>
/// <param name="Url">Where to POST: https, on a host the operator allows (Webhooks:AllowedHosts).</param>
/// <param name="EventTypes">The events to send, e.g. deployment.throttled or invoice.issued.</param>
/// <param name="Description">Your note on what the endpoint is for, up to 200 characters.</param>
public sealed record RegisterWebhookEndpoint(string Url, IReadOnlyList<string> EventTypes, string? Description = null);

/// <summary>An endpoint as its owner sees it; <see cref="Secret"/> only in the answer that created it (register, rotate).</summary>
/// <param name="Id">The endpoint's id.</param>
/// <param name="Url">Where events are POSTed.</param>
/// <param name="EventTypes">The event types it hears.</param>
/// <param name="Description">The owner's note.</param>
/// <param name="Enabled">Whether deliveries are sent to it.</param>
/// <param name="RegisteredAt">When it was registered: it hears events logged after it.</param>
/// <param name="Secret">The signing secret (whsec_…): only in the answers to registering and rotating.</param>
public sealed record WebhookEndpointView(string Id, string Url, IReadOnlyList<string> EventTypes, string? Description, bool Enabled, DateTimeOffset RegisteredAt,
    string? Secret = null)
{
    public static WebhookEndpointView Of(WebhookEndpoint e, string? secret = null) => new(e.Id, e.Url, e.EventTypes, e.Description, e.Enabled, e.RegisteredAt, secret);
}

/// <param name="MessageId">The webhook-id header: the same on every retry; deduplicate on it.</param>
/// <param name="EventType">The event type, e.g. invoice.issued.</param>
/// <param name="OrderKey">Deliveries of one key go one at a time, in log order: the deployment, or the tenant for billing documents.</param>
/// <param name="Status">Pending, Delivered or Failed (given up after the retry schedule).</param>
/// <param name="CreatedAt">When the event was logged.</param>
/// <param name="NextAttemptAt">When it is tried next; null once delivered or given up.</param>
/// <param name="Attempts">Every attempt so far.</param>
public sealed record WebhookDeliveryView(string MessageId, string EventType, string OrderKey, DeliveryStatus Status, DateTimeOffset CreatedAt,
    DateTimeOffset? NextAttemptAt, IReadOnlyList<DeliveryAttempt> Attempts)
{
    public static WebhookDeliveryView Of(WebhookDelivery d) =>
        new(d.MessageId, d.EventType, d.OrderKey, d.Status, d.CreatedAt, d.Status == DeliveryStatus.Pending ? d.NextAttemptAt : null, d.Attempts);
}

/// <summary>
/// Endpoints under the caller's key: a tenant's hear its own events, an operator's every tenant's. Another owner's
/// endpoint is answered 404, as if it did not exist.
/// </summary>
public static class WebhooksApi
{
    public sealed class Validator : AbstractValidator<RegisterWebhookEndpoint>
    {
        public Validator(WebhookSettings settings)
        {
            RuleFor(x => x.Url).NotEmpty().MaximumLength(2000).Custom((url, context) =>
            {
                if (settings.Refuses(url) is { } refusal) context.AddFailure(refusal);
            });
            RuleFor(x => x.EventTypes).NotEmpty().Must(t => t is null || t.Count <= WebhookEventTypes.All.Count);
            RuleForEach(x => x.EventTypes).Must(WebhookEventTypes.All.Contains)
                .WithMessage($"Unknown event type; known: {string.Join(", ", WebhookEventTypes.All.Order())}.");
            RuleFor(x => x.Description!).Text(200).When(x => x.Description is not null);
        }
    }

    const int DeliveryPage = 100;
    const int MaxDeliveryPage = 1_000;

    public static IEndpointRouteBuilder MapWebhooks(this IEndpointRouteBuilder app, WebhookSettings settings)
    {
        var group = app.MapGroup("/v1/webhooks/endpoints").WithTags("Webhooks")
            .RequireAuthorization(p => p.RequireRole(nameof(Role.Tenant), nameof(Role.Operator)));

        group.MapPost("/", async Task<Results<Created<WebhookEndpointView>, ProblemHttpResult>> (RegisterWebhookEndpoint command, HttpContext http, IDocumentSession session,
                SecretBox box, TimeProvider clock, CancellationToken ct) =>
            {
                var (idempotencyKey, badKey) = IdempotencyKeys.Of(http);
                if (badKey is not null) return badKey;
                var tenantId = http.User.TenantId();
                var endpointId = idempotencyKey is null ? "whe_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(10)) : IdempotencyKeys.IdFor("whe_", tenantId, idempotencyKey);
                // A retry gets the endpoint it registered, its secret too while that is still the one it was given.
                if (idempotencyKey is not null && await session.LoadAsync<WebhookEndpoint>(endpointId, ct) is { } earlier)
                    return earlier.OwnedBy(tenantId) && earlier.Url == command.Url && earlier.EventTypes.SequenceEqual(command.EventTypes.Distinct())
                        ? TypedResults.Created($"/v1/webhooks/endpoints/{endpointId}", WebhookEndpointView.Of(earlier, earlier.Version == 1 ? box.Open(earlier.EncryptedSecret) : null))
                        : IdempotencyKeys.Reused("webhook endpoint");
                var secret = Signatures.NewSecret();
                var registered = new WebhookEndpointRegistered(endpointId, tenantId, command.Url, command.EventTypes.Distinct().ToList(), command.Description, box.Seal(secret), clock.GetUtcNow());
                session.Events.StartStream<WebhookEndpoint>(registered.EndpointId, registered);
                await session.SaveChangesAsync(ct);
                return TypedResults.Created($"/v1/webhooks/endpoints/{registered.EndpointId}", WebhookEndpointView.Of(WebhookEndpoint.Create(registered), secret));
            })
            .ValidateWith(new Validator(settings)).ProducesProblem(422)
            .WithName("RegisterWebhookEndpoint").WithHeader(ContractHeader.IdempotencyKey)
            .WithSummary("Register a receiver for the chosen event types. The answer holds its signing secret, shown this once.");

        group.MapGet("/", async (HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId();
                var endpoints = await session.Query<WebhookEndpoint>().Where(e => e.TenantId == tenantId).OrderBy(e => e.RegisteredAt).ToListAsync(ct);
                return TypedResults.Ok(endpoints.Select(e => WebhookEndpointView.Of(e)).ToList());
            })
            .WithName("ListWebhookEndpoints").WithSummary("The caller's endpoints (an operator's: the platform-wide ones).");

        group.MapGet("/{endpointId}", async (string endpointId, HttpContext http, IQuerySession session, CancellationToken ct) =>
                TypedResults.Ok(WebhookEndpointView.Of(await OwnAsync(session, http, endpointId, ct))))
            .WithName("GetWebhookEndpoint").WithSummary("One of the caller's endpoints.").ProducesProblem(404);

        group.MapPost("/{endpointId}/disable", (string endpointId, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
                ChangeAsync(session, http, endpointId, e => WebhookEndpoint.Switch(e, false, clock.GetUtcNow()), ct))
            .WithName("DisableWebhookEndpoint").ProducesProblem(404)
            .WithSummary("Pause delivering: its events are still queued, and wait, their attempts unspent, until it is enabled again.");

        group.MapPost("/{endpointId}/enable", (string endpointId, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
                ChangeAsync(session, http, endpointId, e => WebhookEndpoint.Switch(e, true, clock.GetUtcNow()), ct))
            .WithName("EnableWebhookEndpoint").WithSummary("Deliver again, pending deliveries first.").ProducesProblem(404);

        group.MapPost("/{endpointId}/rotate-secret", async (string endpointId, HttpContext http, IDocumentSession session, SecretBox box, TimeProvider clock, CancellationToken ct) =>
            {
                var secret = Signatures.NewSecret();
                var endpoint = await ChangeAsync(session, http, endpointId, e => WebhookEndpoint.Rotate(e, box.Seal(secret), clock.GetUtcNow()), ct);
                return TypedResults.Ok(endpoint.Value! with { Secret = secret });
            })
            .WithName("RotateWebhookSecret").ProducesProblem(404)
            .WithSummary("A new signing secret, shown this once; the previous one keeps signing beside it for 24 hours.");

        group.MapGet("/{endpointId}/deliveries", async Task<IResult> (string endpointId, DeliveryStatus? status, long? before, int? limit, HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                if (limit is < 1 or > MaxDeliveryPage)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["limit"] = [$"From 1 to {MaxDeliveryPage} deliveries per page."] });
                await OwnAsync(session, http, endpointId, ct);
                var take = limit ?? DeliveryPage;
                var query = session.Query<WebhookDelivery>().Where(d => d.EndpointId == endpointId);
                if (status is { } wanted) query = query.Where(d => d.Status == wanted);
                if (before is { } cursor) query = query.Where(d => d.Sequence < cursor);
                var found = await query.OrderByDescending(d => d.Sequence).Take(take + 1).ToListAsync(ct);
                if (found.Count > take)
                {
                    found = [.. found.Take(take)];
                    var next = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(http.Request.QueryString.Value);
                    next["before"] = found[^1].Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    next["limit"] = take.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    http.Response.Headers.Link = $"<{Microsoft.AspNetCore.WebUtilities.QueryHelpers.AddQueryString(http.Request.Path, next)}>; rel=\"next\"";
                }
                return TypedResults.Ok(found.Select(WebhookDeliveryView.Of).ToList());
            })
            .WithName("ListWebhookDeliveries").Produces<List<WebhookDeliveryView>>().ProducesProblem(404).ProducesValidationProblem()
            .WithSummary("The endpoint's deliveries, newest event first, each with its attempts (when, the receiver's status or the error, the wait after it): "
                + "?status=Pending|Delivered|Failed, pages of ?limit= (default 100, at most 1,000) older than ?before= (Link rel=next).");
        return app;
    }

    static async Task<WebhookEndpoint> OwnAsync(IQuerySession session, HttpContext http, string endpointId, CancellationToken ct) =>
        await session.LoadAsync<WebhookEndpoint>(endpointId, ct) is { } e && e.OwnedBy(http.User.TenantId())
            ? e
            : throw RuleViolation.NotFound($"No webhook endpoint '{endpointId}'.");

    static async Task<Ok<WebhookEndpointView>> ChangeAsync(IDocumentSession session, HttpContext http, string endpointId,
        Func<WebhookEndpoint, WebhookEndpointEvent[]> decide, CancellationToken ct)
    {
        var stream = await session.Events.FetchForWriting<WebhookEndpoint>(endpointId, ct);
        if (stream.Aggregate is not { } endpoint || !endpoint.OwnedBy(http.User.TenantId())) throw RuleViolation.NotFound($"No webhook endpoint '{endpointId}'.");
        var events = decide(endpoint);
        stream.AppendMany(events);
        await session.SaveChangesAsync(ct);
        return TypedResults.Ok(WebhookEndpointView.Of(events.Aggregate(endpoint, (state, e) => state.Then(e))));
    }
}
