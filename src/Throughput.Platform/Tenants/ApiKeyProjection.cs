using JasperFx.Events;
using Marten;
using Marten.Events.Projections;
using Throughput.Access;

namespace Throughput.Tenants;

/// <summary>Keeps <see cref="ApiKey"/> documents in step with key events, in the same transaction (keys are rare, auth needs them at once).</summary>
public sealed partial class ApiKeyProjection : EventProjection
{
    public ApiKeyProjection()
    {
        // ApplyAsync is overridden, so no event types are inferred: without these a rebuild would read it the whole log.
        IncludeType<ApiKeyIssued>();
        IncludeType<StaffKeyIssued>();
        IncludeType<ApiKeyRevoked>();
        IncludeType<StaffKeyRevoked>();
    }

    public override async ValueTask ApplyAsync(IDocumentOperations operations, IEvent e, CancellationToken cancellation)
    {
        switch (e.Data)
        {
            case ApiKeyIssued k:
                operations.Store(new ApiKey(k.KeyId, k.TenantId, k.Role, k.SecretHash, false));
                break;
            case StaffKeyIssued k:
                operations.Store(new ApiKey(k.KeyId, null, k.Role, k.SecretHash, false, k.Role == Role.ServingNode ? k.Name : null));
                break;
            case ApiKeyRevoked k:
                await Revoke(operations, k.KeyId, cancellation);
                break;
            case StaffKeyRevoked k:
                await Revoke(operations, k.KeyId, cancellation);
                break;
        }
    }

    static async Task Revoke(IDocumentOperations operations, string keyId, CancellationToken ct)
    {
        if (await operations.LoadAsync<ApiKey>(keyId, ct) is { } key) operations.Store(key with { Revoked = true });
    }
}
