using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Throughput.Configuration;

namespace Throughput.Access;

public sealed class AccessModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(StaffKeyIssued)] = "staff_key_issued",
        [typeof(StaffKeyRevoked)] = "staff_key_revoked",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(Staff)];

    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        services.AddMemoryCache();
        services.AddSingleton<UnknownKeyLookups>();
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        services.AddAuthorizationBuilder()
            .SetFallbackPolicy(new AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build())
            .AddPolicy(Policies.Operator, p => p.RequireRole(nameof(Role.Operator)))
            .AddPolicy(Policies.Finance, p => p.RequireRole(nameof(Role.Finance)))
            .AddPolicy(Policies.Tenant, p => p.RequireRole(nameof(Role.Tenant)).RequireClaim(PrincipalExtensions.TenantClaim))
            .AddPolicy(Policies.ServingNode, p => p.RequireRole(nameof(Role.ServingNode), nameof(Role.Operator)));
        services.AddHostedService<BootstrapOperatorKey>();
    }

    public override void MapEndpoints(WebApplication app)
    {
        app.MapStaffKeys();
        app.MapCaller();
    }
}
