using Marten;
using Throughput.Deployments;

namespace Throughput.Metering;

public static class Usage
{
    public sealed record UsageTotals(string DeploymentId, long Records, long PromptTokens, long CachedTokens, long OutputTokens);

    public static IEndpointRouteBuilder MapUsage(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/deployments/{deploymentId}/usage/totals", async (string deploymentId, IQuerySession session, CancellationToken ct) =>
            await session.LoadAsync<Deployment>(deploymentId, ct) is { } d
                ? Results.Ok(new UsageTotals(d.Id, d.Records, d.PromptTokens, d.CachedTokens, d.OutputTokens))
                : Results.NotFound());
        return app;
    }
}
