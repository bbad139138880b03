using FluentValidation;
using Throughput.Access;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Admission;

/// <summary>One request to admit against a deployment's bucket.</summary>
/// <param name="EstimatedTokens">The request's weighted cost before it runs (prompt tokens plus expected output, weighted).</param>
public sealed record AdmissionCheck(long EstimatedTokens);

/// <summary>The pull side for serving nodes: one deployment, many at once, a whole region/model, or one request's admit/deny.</summary>
public static class AdmissionApi
{
    public const int MaxQuery = 1000;

    public sealed class QueryValidator : AbstractValidator<AdmissionQuery>
    {
        public QueryValidator() => RuleFor(x => x.DeploymentIds).Must(ids => ids is { Count: > 0 and <= MaxQuery })
            .WithMessage($"Between 1 and {MaxQuery} deployment ids.");
    }

    public sealed class CheckValidator : AbstractValidator<AdmissionCheck>
    {
        public CheckValidator() => RuleFor(x => x.EstimatedTokens).GreaterThanOrEqualTo(0).LessThanOrEqualTo(1_000_000_000);
    }

    public static IEndpointRouteBuilder MapAdmission(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admission").RequireAuthorization(Policies.ServingNode).WithTags("Admission (serving nodes)");

        group.MapGet("/{deploymentId}", async Task<Results<Ok<AdmissionLimitChanged>, ProblemHttpResult>> (string deploymentId, AdmissionTable table, TimeProvider clock, CancellationToken ct) =>
                await table.FindAsync(deploymentId, ct) is { } d
                    ? TypedResults.Ok(AdmissionLimits.Of(d, table.TenantOf(d), clock.GetUtcNow()))
                    : TypedResults.Problem(statusCode: 404, title: "Not found", detail: $"No deployment '{deploymentId}'."))
            .WithName("GetAdmissionLimit").WithSummary("A deployment's admission limit and state now.")
            .ProducesProblem(404);

        group.MapPost("/query", async (AdmissionQuery query, AdmissionTable table, TimeProvider clock, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var answers = new List<AdmissionLimitChanged>(query.DeploymentIds.Count);
                foreach (var id in query.DeploymentIds.Distinct())
                    if (await table.FindAsync(id, ct) is { } d) answers.Add(AdmissionLimits.Of(d, table.TenantOf(d), now));
                return TypedResults.Ok(answers);
            })
            .ValidateWith(new QueryValidator())
            .WithName("QueryAdmissionLimits").WithSummary("Many deployments' limits in one call; unknown ids are left out.");

        group.MapGet("/", async (string? region, string? model, AdmissionTable table, TimeProvider clock, CancellationToken ct) =>
            {
                await table.CatchUpAsync(ct);
                var now = clock.GetUtcNow();
                return TypedResults.Ok(table.Deployments
                    .Where(d => d.Status == DeploymentStatus.Active && (region is null || d.ServedFrom(region)) && (model is null || d.Model == model))
                    .Select(d => AdmissionLimits.Of(d, table.TenantOf(d), now))
                    .ToList());
            })
            .WithName("ListAdmissionLimits").WithSummary("Every active deployment's limit, optionally for one region and/or model: what a starting node pulls.");

        group.MapPost("/{deploymentId}/check", async Task<Results<Ok<AdmissionDecision>, JsonHttpResult<AdmissionDecision>, ProblemHttpResult>> (string deploymentId, AdmissionCheck check, HttpContext http, AdmissionTable table, TimeProvider clock, CancellationToken ct) =>
            {
                if (await table.FindAsync(deploymentId, ct) is not { } d)
                    return TypedResults.Problem(statusCode: 404, title: "Not found", detail: $"No deployment '{deploymentId}'.");
                var decision = AdmissionLimits.Check(d, table.TenantOf(d), check.EstimatedTokens, clock.GetUtcNow());
                http.Response.Headers["x-ratelimit-remaining-tokens"] = decision.RemainingTokens.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (decision.Admitted) return TypedResults.Ok(decision);
                http.Response.Headers["retry-after-ms"] = decision.RetryAfterMs.ToString(System.Globalization.CultureInfo.InvariantCulture);
                http.Response.Headers.RetryAfter = Math.Max(1, (decision.RetryAfterMs + 999) / 1000).ToString(System.Globalization.CultureInfo.InvariantCulture);
                return TypedResults.Json(decision, statusCode: StatusCodes.Status429TooManyRequests);
            })
            .ValidateWith(new CheckValidator())
            .WithName("CheckAdmission").WithSummary("Admit or refuse one request of an estimated weighted cost (429 with retry-after-ms when refused).")
            .Produces<AdmissionDecision>(429).ProducesProblem(404);
        return app;
    }
}
