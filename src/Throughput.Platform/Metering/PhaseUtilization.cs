using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Metering;

/// <summary>A split region's prompt and generation pools in one minute: what is sold of each, and what its servers served.</summary>
/// <param name="Model">The model of the split region.</param>
/// <param name="Region">The region.</param>
/// <param name="Minute">The minute (UTC) the figures are for.</param>
/// <param name="Phases">The prompt and the generation pool.</param>
public sealed record PhaseUtilization(string Model, string Region, DateTimeOffset Minute, IReadOnlyList<PhaseUse> Phases);

/// <summary>One phase pool: sold against capacity in PTUs, and served against capacity in the phase's own tokens.</summary>
/// <param name="CapacityTokensPerMinute">Prompt tokens not served from the cache (prompt phase) or output tokens (generation phase) a minute at the pool's capacity.</param>
/// <param name="ServedTokens">Those tokens metered in the minute by the deployments holding PTUs in the pool (each in proportion to its PTUs here).</param>
/// <param name="Phase">Prompt or Generation: which half of requests the pool serves.</param>
/// <param name="PoolId">The phase pool's id.</param>
/// <param name="Gpus">The GPUs the pool is sized in, if it is sized in GPUs.</param>
/// <param name="CapacityPtu">The pool's capacity in PTUs of its phase.</param>
/// <param name="SoldPtu">The PTUs of it sold.</param>
/// <param name="SoldShare">Sold ÷ capacity.</param>
/// <param name="ServedShare">Served tokens ÷ what the capacity serves in a minute.</param>
/// <param name="Deployments">How many deployments hold PTUs in the pool.</param>
public sealed record PhaseUse(ServingPhase Phase, string PoolId, GpuSizing? Gpus, decimal CapacityPtu, decimal SoldPtu, decimal SoldShare,
    long CapacityTokensPerMinute, long ServedTokens, decimal ServedShare, int Deployments);

/// <summary>Operators see each phase of a split region on its own: its PTUs sold, and its servers' tokens served in a minute.</summary>
public static class PhaseUtilizations
{
    /// <param name="held">The PTUs each deployment holds in the pool.</param>
    /// <param name="minutes">Each of those deployments' usage in the minute.</param>
    public static PhaseUse Of(CapacityPool pool, ModelEntry model, IReadOnlyDictionary<string, decimal> held, IReadOnlyDictionary<string, (decimal Ptu, TokenCounts Tokens)> minutes)
    {
        // A PTU of generation work is the output that costs a PTU's weighted tokens: its rate ÷ the output weight.
        var perPtu = pool.Phase == ServingPhase.Generation ? model.InputTokensPerMinutePerPtu / model.OutputWeight : model.InputTokensPerMinutePerPtu;
        var capacity = (long)decimal.Floor(pool.Capacity * perPtu);
        decimal served = 0;
        foreach (var (deploymentId, ptu) in held)
        {
            if (!minutes.TryGetValue(deploymentId, out var use) || use.Ptu <= 0) continue;
            var tokens = pool.Phase == ServingPhase.Generation ? use.Tokens.OutputTokens : use.Tokens.PromptTokens - use.Tokens.CachedTokens;
            served += tokens * Math.Min(1, ptu / use.Ptu);
        }
        var servedTokens = (long)decimal.Round(served, MidpointRounding.AwayFromZero);
        return new PhaseUse(pool.Phase, pool.Id, pool.Gpus, pool.Capacity, pool.Sold, pool.Capacity == 0 ? 0 : decimal.Round(pool.Sold / pool.Capacity, 4),
            capacity, servedTokens, capacity == 0 ? 0 : decimal.Round((decimal)servedTokens / capacity, 4), held.Count);
    }

    /// <summary>What each deployment holds in a pool now, from the pool's allocations and frees.</summary>
    public static IReadOnlyDictionary<string, decimal> Held(IEnumerable<object> poolEvents)
    {
        var held = new Dictionary<string, decimal>();
        foreach (var e in poolEvents)
        {
            if (e is PtusAllocated a) held[a.DeploymentId] = held.GetValueOrDefault(a.DeploymentId) + a.Ptu;
            if (e is PtusFreed f) held[f.DeploymentId] = held.GetValueOrDefault(f.DeploymentId) - f.Ptu;
        }
        return held.Where(h => h.Value > 0).ToDictionary();
    }

    public static IEndpointRouteBuilder MapPhaseUtilization(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapGet("/v1/operator/pools/{model}/{region}/phases", async Task<Results<Ok<PhaseUtilization>, ProblemHttpResult>> (string model, string region, DateTimeOffset? minute, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                if (catalog.Find(model) is not { } entry)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["model"] = ["Unknown model; GET /v1/models lists them."] });
                var at = UsageMinute.MinuteOf(minute ?? clock.GetUtcNow().AddMinutes(-1));
                var pools = await session.LoadManyAsync<CapacityPool>(ct, PhasePools.Split.Select(p => CapacityPool.StreamId(model, region, p)));
                if (pools.Count == 0) throw RuleViolation.NotFound($"{model} in {region} is not split by phase.");
                List<PhaseUse> phases = [];
                foreach (var pool in pools.OrderBy(p => p.Phase))
                {
                    var held = Held((await session.Events.FetchStreamAsync(pool.Id, token: ct)).Select(e => e.Data));
                    var deployments = await session.LoadManyAsync<Deployment>(ct, held.Keys);
                    var usage = await UsageMinuteProjection.ReadAsync(session, [.. held.Keys], at, at, ct);
                    var minutes = deployments.ToDictionary(d => d.Id, d => (d.Ptu, usage.SingleOrDefault(u => u.DeploymentId == d.Id)?.Tokens ?? default));
                    phases.Add(Of(pool, entry, held, minutes));
                }
                return TypedResults.Ok(new PhaseUtilization(model, region, at, phases));
            })
            .RequireAuthorization(Policies.Operator).WithTags("Operator: capacity").WithName("GetPhaseUtilization").ProducesProblem(400).ProducesProblem(404)
            .WithSummary("A split region's prompt and generation pools in one minute (default: the last complete one): PTUs sold of each, and the tokens its servers served against what they can.");
        return app;
    }
}
