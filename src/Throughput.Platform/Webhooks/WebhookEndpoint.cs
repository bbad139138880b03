namespace Throughput.Webhooks;

/// <summary>An event of a webhook endpoint's stream.</summary>
public abstract record WebhookEndpointEvent(string EndpointId);

/// <summary>
/// A tenant (or, with no tenant, an operator for every tenant's events) registered a receiver. The signing secret is kept
/// encrypted (<see cref="SecretBox"/>): the platform must sign with it, so a hash would not do.
/// </summary>
public sealed record WebhookEndpointRegistered(string EndpointId, string? TenantId, string Url, IReadOnlyList<string> EventTypes, string? Description,
    string EncryptedSecret, DateTimeOffset RegisteredAt) : WebhookEndpointEvent(EndpointId);

/// <summary>A new secret signs from now on; the previous one signs beside it until <see cref="PreviousValidUntil"/>.</summary>
public sealed record WebhookSecretRotated(string EndpointId, string EncryptedSecret, DateTimeOffset PreviousValidUntil, DateTimeOffset RotatedAt)
    : WebhookEndpointEvent(EndpointId);

public sealed record WebhookEndpointDisabled(string EndpointId, DateTimeOffset DisabledAt) : WebhookEndpointEvent(EndpointId);

public sealed record WebhookEndpointEnabled(string EndpointId, DateTimeOffset EnabledAt) : WebhookEndpointEvent(EndpointId);

/// <summary>A receiver of webhooks: whose it is (null tenant: the operators'), where, which event types, and its secrets.</summary>
public sealed record WebhookEndpoint(
    string Id,
    string? TenantId,
    string Url,
    IReadOnlyList<string> EventTypes,
    string? Description,
    bool Enabled,
    string EncryptedSecret,
    string? PreviousEncryptedSecret,
    DateTimeOffset? PreviousValidUntil,
    DateTimeOffset RegisteredAt,
    long Version)
{
    /// <summary>How long a rotated-out secret keeps signing beside the new one, so receivers can switch without losing a delivery.</summary>
    public static readonly TimeSpan RotationGrace = TimeSpan.FromHours(24);

    public static WebhookEndpoint Create(WebhookEndpointRegistered e) =>
        new(e.EndpointId, e.TenantId, e.Url, e.EventTypes, e.Description, true, e.EncryptedSecret, null, null, e.RegisteredAt, 0);

    public WebhookEndpoint Apply(WebhookSecretRotated e) =>
        this with { PreviousEncryptedSecret = EncryptedSecret, PreviousValidUntil = e.PreviousValidUntil, EncryptedSecret = e.EncryptedSecret };

    public WebhookEndpoint Apply(WebhookEndpointDisabled e) => this with { Enabled = false };

    public WebhookEndpoint Apply(WebhookEndpointEnabled e) => this with { Enabled = true };

    /// <summary>The state after one more event of the endpoint's stream, for folds outside Marten's snapshot.</summary>
    public WebhookEndpoint Then(WebhookEndpointEvent @event) => @event switch
    {
        WebhookSecretRotated e => Apply(e),
        WebhookEndpointDisabled e => Apply(e),
        WebhookEndpointEnabled e => Apply(e),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not a change of an endpoint"),
    };

    /// <summary>Whether the caller (a tenant, or null for an operator) owns it; anyone else is told it does not exist.</summary>
    public bool OwnedBy(string? tenantId) => TenantId == tenantId;

    /// <summary>
    /// An operator's endpoint hears every tenant's events; a tenant's only its own. A disabled endpoint still hears: its
    /// deliveries wait until it is enabled again, so disabling pauses and loses nothing.
    /// </summary>
    public bool Hears(string type, string tenantId) => EventTypes.Contains(type) && (TenantId is null || TenantId == tenantId);

    /// <summary>The secrets that sign at <paramref name="now"/>: the current one, and the previous one during its grace.</summary>
    public IEnumerable<string> SigningSecrets(DateTimeOffset now)
    {
        yield return EncryptedSecret;
        if (PreviousEncryptedSecret is not null && PreviousValidUntil > now) yield return PreviousEncryptedSecret;
    }

    public static WebhookEndpointEvent[] Rotate(WebhookEndpoint endpoint, string encryptedSecret, DateTimeOffset now) =>
        [new WebhookSecretRotated(endpoint.Id, encryptedSecret, now + RotationGrace, now)];

    /// <summary>Disabling a disabled endpoint (or enabling an enabled one) changes nothing.</summary>
    public static WebhookEndpointEvent[] Switch(WebhookEndpoint endpoint, bool enabled, DateTimeOffset now) =>
        endpoint.Enabled == enabled ? []
        : enabled ? [new WebhookEndpointEnabled(endpoint.Id, now)]
        : [new WebhookEndpointDisabled(endpoint.Id, now)];
}
