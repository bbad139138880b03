namespace Throughput.Adapters;

/// <summary>A tenant registered an adapter (a low-rank fine-tune of a base model): metadata only, the platform never holds its weights.</summary>
public sealed record AdapterRegistered(string Id, string TenantId, string AdapterId, string BaseModel, int Rank, decimal SizeMb, DateTimeOffset RegisteredAt);

/// <summary>
/// A tenant's adapter. Its id is the tenant's own name for it (what metering records carry as <c>adapterId</c>), unique
/// within the tenant; the stream is keyed by both, so two tenants may use the same name without seeing each other's.
/// </summary>
public sealed record Adapter(string Id, string TenantId, string AdapterId, string BaseModel, int Rank, decimal SizeMb, DateTimeOffset RegisteredAt)
{
    public static string StreamId(string tenantId, string adapterId) => $"adapter:{tenantId}:{adapterId}";

    public static Adapter Create(AdapterRegistered e) => new(e.Id, e.TenantId, e.AdapterId, e.BaseModel, e.Rank, e.SizeMb, e.RegisteredAt);
}
