using Marten;
using Throughput.Access;
using Throughput.Catalog;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Capacity;

/// <summary>
/// Where a tenant can buy a model: each region with a pool for it, the PTUs still for sale there and whether the amount
/// asked about fits; with the model's price per PTU-hour in the tenant's currency (null when the model is not priced in it).
/// </summary>
/// <param name="Model">The catalog model asked about.</param>
/// <param name="Currency">The caller's currency, in which the price is given.</param>
/// <param name="PricePerPtuHour">The model's price per PTU-hour in that currency; null when the catalog has no price in it.</param>
/// <param name="MinimumPtu">The fewest PTUs a deployment of the model may have.</param>
/// <param name="PtuIncrement">The step PTUs are bought in.</param>
/// <param name="Ptu">The PTUs asked about (ptu query parameter); null when not asked.</param>
/// <param name="Regions">The regions with PTUs of the model free.</param>
public sealed record CapacityRegions(string Model, string Currency, decimal? PricePerPtuHour, decimal MinimumPtu, decimal PtuIncrement, decimal? Ptu, IReadOnlyList<RegionCapacity> Regions);

/// <summary>Only the pool's free PTUs: what others bought, and how much the operator has, stay private.</summary>
/// <param name="Region">The region.</param>
/// <param name="AvailablePtu">PTUs of the model free in the region now.</param>
/// <param name="Fits">Whether the PTUs asked about fit there; null when none were asked about.</param>
public sealed record RegionCapacity(string Region, decimal AvailablePtu, bool? Fits);

/// <summary>Capacity discovery for customers: which regions have room for a model, before buying rather than from a 409.</summary>
public static class Regions
{
    public static CapacityRegions Of(ModelEntry model, Tenant tenant, IEnumerable<CapacityPool> pools, decimal? ptu) =>
        new(model.Name, tenant.Currency, model.Prices.TryGetValue(tenant.Currency, out var price) ? price.PerPtuHour : null,
            model.MinimumPtu, model.PtuIncrement, ptu,
            [.. PhasePools.ByRegion(pools.Where(p => p.Model == model.Name)).OrderBy(p => p.Region, StringComparer.Ordinal)
                .Select(p => new RegionCapacity(p.Region, p.Free, ptu is { } wanted ? wanted <= p.Free : null))]);

    public static IEndpointRouteBuilder MapRegions(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapGet("/v1/capacity/regions", async Task<Results<Ok<CapacityRegions>, ProblemHttpResult>> (string? model, decimal? ptu, HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                if (catalog.Find(model ?? "") is not { } entry)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["model"] = ["Name a model for sale (GET /v1/models lists them)."] });
                if (ptu is <= 0 or > 100_000)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["ptu"] = ["Ask about more than 0 and at most 100,000 PTU."] });
                var tenantId = http.User.TenantId()!;
                var tenant = await session.LoadAsync<Tenant>(tenantId, ct) ?? throw RuleViolation.NotFound($"No tenant '{tenantId}'.");
                var pools = await session.Query<CapacityPool>().Where(p => p.Model == entry.Name).ToListAsync(ct);
                return TypedResults.Ok(Of(entry, tenant, pools, ptu));
            })
            .RequireAuthorization(Policies.Tenant).WithTags("Catalog").WithName("ListCapacityRegions").ProducesProblem(400)
            .WithSummary("Regions with a pool for the model, the PTUs available in each and whether ptu (optional) fits; the price per PTU-hour is in the caller's currency.");
        return app;
    }
}
