using FluentValidation;
using Throughput.Catalog;
using Throughput.Http;

namespace Throughput.Capacity;

/// <summary>A workload to size: how many PTUs of a model it needs at its peak minute.</summary>
/// <param name="Model">A model of the catalog, e.g. <c>gpt-4o-mini</c>.</param>
/// <param name="RequestsPerMinute">Requests in the busiest minute: more than 0, at most 10,000,000.</param>
/// <param name="PromptTokens">Prompt tokens per request on average: 0 to 2,000,000.</param>
/// <param name="OutputTokens">Generated tokens per request on average: 0 to 1,000,000.</param>
/// <param name="CacheHitRate">The share of prompt tokens served from the prompt cache: 0 to 1.</param>
public sealed record EstimateCapacity(string Model, decimal RequestsPerMinute, decimal PromptTokens, decimal OutputTokens, decimal CacheHitRate);

/// <param name="Model">The catalog model sized.</param>
/// <param name="WeightedTokensPerMinute">The peak minute's weighted tokens: requests × (prompt − cached × cached deduction + output weight × output).</param>
/// <param name="Ptu">The PTUs that serve that peak, rounded up to the model's increment and at least its minimum.</param>
/// <param name="TokensPerMinute">Weighted tokens per minute those PTUs admit.</param>
/// <param name="UtilizationAtPeak">The peak minute's weighted tokens ÷ what the PTUs admit (0.9 = 90 %).</param>
public sealed record CapacityEstimate(string Model, decimal WeightedTokensPerMinute, decimal Ptu, long TokensPerMinute, decimal UtilizationAtPeak);

/// <summary>The sizing rule: PTUs = (prompt × (1 − cache hits × deduction) + weight × output) × requests ÷ TPM per PTU, rounded up to the increment.</summary>
public static class Estimate
{
    public sealed class Validator : AbstractValidator<EstimateCapacity>
    {
        public Validator(ModelCatalog catalog)
        {
            RuleFor(x => x.Model).NotEmpty().Must(m => catalog.Find(m) is not null).WithMessage("Unknown model; GET /v1/models lists them.");
            RuleFor(x => x.RequestsPerMinute).GreaterThan(0).LessThanOrEqualTo(10_000_000);
            RuleFor(x => x.PromptTokens).GreaterThanOrEqualTo(0).LessThanOrEqualTo(2_000_000);
            RuleFor(x => x.OutputTokens).GreaterThanOrEqualTo(0).LessThanOrEqualTo(1_000_000);
            RuleFor(x => x.CacheHitRate).InclusiveBetween(0, 1);
        }
    }

    public static CapacityEstimate Compute(ModelEntry model, EstimateCapacity q)
    {
        var perRequest = q.PromptTokens * (1 - q.CacheHitRate * model.CachedDeduction) + model.OutputWeight * q.OutputTokens;
        var weighted = perRequest * q.RequestsPerMinute;
        var ptu = model.RoundUpToIncrement(weighted / model.InputTokensPerMinutePerPtu);
        var tpm = (long)decimal.Floor(ptu * model.InputTokensPerMinutePerPtu);
        return new CapacityEstimate(model.Name, weighted, ptu, tpm, tpm == 0 ? 0 : decimal.Round(weighted / tpm, 4));
    }

    public static IEndpointRouteBuilder MapEstimate(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapPost("/v1/capacity/estimate", (EstimateCapacity query) => TypedResults.Ok(Compute(catalog.Find(query.Model)!, query)))
            .ValidateWith(new Validator(catalog))
            .WithTags("Catalog").WithName("EstimateCapacity")
            .WithSummary("PTUs a workload needs for a model, rounded up to the model's increment.");
        return app;
    }
}
