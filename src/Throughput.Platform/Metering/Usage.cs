using Marten;
using Throughput.Access;
using Throughput.Deployments;

namespace Throughput.Metering;

public static class Usage
{
    /// <param name="DeploymentId">The deployment.</param>
    /// <param name="Records">Metering records (requests) since it was bought.</param>
    /// <param name="PromptTokens">Prompt tokens, cached ones included.</param>
    /// <param name="CachedTokens">Prompt tokens served from the prompt cache.</param>
    /// <param name="OutputTokens">Generated tokens.</param>
    public sealed record UsageTotals(string DeploymentId, long Records, long PromptTokens, long CachedTokens, long OutputTokens);

    public static IEndpointRouteBuilder MapUsage(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/deployments/{deploymentId}/usage/totals", async (string deploymentId, HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                var d = await session.LoadOwnedAsync(deploymentId, http.User.TenantId()!, ct);
                return TypedResults.Ok(new UsageTotals(d.Id, d.Usage.Records, d.Usage.PromptTokens, d.Usage.CachedTokens, d.Usage.OutputTokens));
            })
            .RequireAuthorization(Policies.Tenant).WithTags("Usage").WithName("GetUsageTotals")
            .ProducesProblem(404);
        return app;
    }
}
