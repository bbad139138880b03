using System.Collections.Immutable;
using Throughput.Access;
using Throughput.Http;

namespace Throughput.Tenants;

/// <summary>An event of a tenant's stream.</summary>
public abstract record TenantEvent(string TenantId);

public sealed record TenantCreated(string TenantId, string Name, string Currency, DateTimeOffset CreatedAt) : TenantEvent(TenantId);

public sealed record ApiKeyIssued(string TenantId, string KeyId, Role Role, string SecretHash, DateTimeOffset IssuedAt) : TenantEvent(TenantId);

public sealed record ApiKeyRevoked(string TenantId, string KeyId, DateTimeOffset RevokedAt) : TenantEvent(TenantId);

public sealed record TenantSuspended(string TenantId, string Reason, DateTimeOffset SuspendedAt) : TenantEvent(TenantId);

public sealed record TenantReinstated(string TenantId, DateTimeOffset ReinstatedAt) : TenantEvent(TenantId);

public enum TenantStatus
{
    Active,
    Suspended,
}

/// <summary>A customer account: its currency, its API keys, whether it may buy and be served.</summary>
public sealed record Tenant(
    string Id,
    string Name,
    string Currency,
    TenantStatus Status,
    ImmutableSortedSet<string> ActiveKeys,
    DateTimeOffset CreatedAt,
    long AdmissionRevision,
    long Version)
{
    public static Tenant Create(TenantCreated e) =>
        new(e.TenantId, e.Name, e.Currency, TenantStatus.Active, [], e.CreatedAt, 0, 0);

    public Tenant Apply(ApiKeyIssued e) => this with { ActiveKeys = ActiveKeys.Add(e.KeyId) };

    public Tenant Apply(ApiKeyRevoked e) => this with { ActiveKeys = ActiveKeys.Remove(e.KeyId) };

    // Suspension changes every deployment's admission: it counts into each one's admission version.
    public Tenant Apply(TenantSuspended e) => this with { Status = TenantStatus.Suspended, AdmissionRevision = AdmissionRevision + 1 };

    public Tenant Apply(TenantReinstated e) => this with { Status = TenantStatus.Active, AdmissionRevision = AdmissionRevision + 1 };

    /// <summary>The state after one more event of the tenant's stream, for folds outside Marten's snapshot (which calls the Apply methods itself; a method named Evolve it would take for its own convention).</summary>
    public Tenant Then(TenantEvent @event) => @event switch
    {
        TenantCreated e => Create(e),
        ApiKeyIssued e => Apply(e),
        ApiKeyRevoked e => Apply(e),
        TenantSuspended e => Apply(e),
        TenantReinstated e => Apply(e),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an event of a tenant's stream"),
    };

    /// <summary>
    /// A tenant's stream is named by its id alone (stores hold them so), so the ids the other streams take are not tenant
    /// ids: the system streams' names and the other kinds' prefixes (pools and nodes contain ':', which no tenant id can).
    /// </summary>
    public static string StreamId(string tenantId) => tenantId;

    static readonly string[] OtherStreams = ["staff", "invoice-register"];
    static readonly string[] OtherKinds = ["dep-", "res-", "inv-"];

    public static bool IsReservedId(string tenantId) =>
        OtherStreams.Contains(tenantId, StringComparer.Ordinal) || OtherKinds.Any(prefix => tenantId.StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>A suspended tenant buys nothing and grows nothing; it may still shrink and release.</summary>
    public void EnsureActive()
    {
        if (Status == TenantStatus.Suspended)
            throw RuleViolation.Conflict($"Tenant '{Id}' is suspended: it may shrink or release what it has, not buy or grow.");
    }
}

/// <summary>The tenant decisions: state + command → events. An idempotent repeat yields no events.</summary>
public static class TenantDecisions
{
    public static TenantEvent[] Create(Tenant? existing, string tenantId, string name, string currency, DateTimeOffset now)
    {
        if (existing is null) return [new TenantCreated(tenantId, name, currency, now)];
        if (existing.Name == name && existing.Currency == currency) return [];
        throw RuleViolation.Conflict($"Tenant '{tenantId}' already exists with other details.");
    }

    public static TenantEvent[] IssueKey(Tenant tenant, string keyId, string secretHash, DateTimeOffset now)
    {
        if (tenant.ActiveKeys.Contains(keyId))
            throw RuleViolation.Conflict($"API key '{keyId}' was already issued; its secret is shown only once.");
        return [new ApiKeyIssued(tenant.Id, keyId, Role.Tenant, secretHash, now)];
    }

    public static TenantEvent[] RevokeKey(Tenant tenant, string keyId, DateTimeOffset now) =>
        tenant.ActiveKeys.Contains(keyId)
            ? [new ApiKeyRevoked(tenant.Id, keyId, now)]
            : throw RuleViolation.NotFound($"Tenant '{tenant.Id}' has no active API key '{keyId}'.");

    public static TenantEvent[] Suspend(Tenant tenant, string reason, DateTimeOffset now) =>
        tenant.Status == TenantStatus.Suspended ? [] : [new TenantSuspended(tenant.Id, reason, now)];

    public static TenantEvent[] Reinstate(Tenant tenant, DateTimeOffset now) =>
        tenant.Status == TenantStatus.Active ? [] : [new TenantReinstated(tenant.Id, now)];
}
