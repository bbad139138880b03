using System.Security.Claims;

namespace Throughput.Access;

/// <summary>Who the presented key is: the dashboard signs in with it and opens the page for the role.</summary>
/// <param name="KeyId">The id of the API key the request was made with (tpk_{keyId}.…).</param>
/// <param name="Role">What the key may do: Tenant, Finance, Operator or ServingNode.</param>
/// <param name="TenantId">The tenant a tenant key belongs to; null for staff keys.</param>
public sealed record CallerView(string KeyId, Role Role, string? TenantId);

public static class Caller
{
    public static IEndpointRouteBuilder MapCaller(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/me", (ClaimsPrincipal user) =>
                TypedResults.Ok(new CallerView(user.KeyId(), Enum.Parse<Role>(user.FindFirstValue(ClaimTypes.Role)!), user.TenantId())))
            .WithTags("Access").WithName("GetCaller").WithSummary("The calling key's id, role and tenant.");
        return app;
    }
}
