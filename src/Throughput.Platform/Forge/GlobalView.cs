using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Finance;
using Throughput.Http;
using Throughput.Invoicing;

namespace Throughput.Forge;

/// <summary>
/// Capacity against what was sold, placed and served, for one pool or summed over several.
/// </summary>
/// <param name="CapacityPtu">The PTUs of capacity now.</param>
/// <param name="SoldPtu">PTUs bought in these regions (what invoices name), wherever they are placed.</param>
/// <param name="PlacedPtu">PTUs the pools hold now, whichever region they were bought in.</param>
/// <param name="SoldOfCapacity">Sold ÷ capacity: Forge's headline figure.</param>
/// <param name="PlacedOfCapacity">Placed ÷ capacity: how full the pools are.</param>
/// <param name="RecentWeightedTokens">Weighted tokens served from these pools in the recent window (the 5 whole minutes before now).</param>
/// <param name="RecentUtilization">Served utilization in the recent window: its weighted tokens ÷ what today's capacity serves in 5 minutes.</param>
/// <param name="MonthWeightedTokens">Weighted tokens served from these pools this month (UTC, to now).</param>
/// <param name="MonthUtilization">Served utilization this month: its weighted tokens ÷ what the capacity, as it was through the month, served to now.</param>
public sealed record ForgeFigures(
    decimal CapacityPtu, decimal SoldPtu, decimal PlacedPtu, decimal SoldOfCapacity, decimal PlacedOfCapacity,
    decimal RecentWeightedTokens, decimal RecentUtilization, decimal MonthWeightedTokens, decimal MonthUtilization);

/// <param name="Model">The pool's model.</param>
/// <param name="Figures">The pool's capacity, sold, placed and served.</param>
public sealed record PoolFigures(string Model, ForgeFigures Figures);

/// <param name="Region">The region.</param>
/// <param name="Geography">The geography it belongs to.</param>
/// <param name="Figures">Its pools' figures summed.</param>
/// <param name="Pools">Each model's pool in the region.</param>
public sealed record RegionFigures(string Region, string Geography, ForgeFigures Figures, IReadOnlyList<PoolFigures> Pools);

/// <param name="Geography">The geography (a Data Zone).</param>
/// <param name="Regions">Its regions.</param>
/// <param name="Figures">Capacity, sold, placed and served, summed over its regions.</param>
public sealed record GeographyFigures(string Geography, IReadOnlyList<string> Regions, ForgeFigures Figures);

/// <summary>The fleet (every pool shown), its geographies and regions (each with its pools), at <paramref name="At"/>.</summary>
/// <param name="At">When the view was computed.</param>
/// <param name="RecentFrom">Start of the recent window (the 5 whole minutes before At).</param>
/// <param name="RecentTo">End of the recent window.</param>
/// <param name="Month">The month (yyyy-MM, UTC) the month figures cover, to At.</param>
/// <param name="Fleet">Every pool shown, summed.</param>
/// <param name="Geographies">Each geography's figures.</param>
/// <param name="Regions">Each region's figures, with its pools.</param>
public sealed record GlobalView(DateTimeOffset At, DateTimeOffset RecentFrom, DateTimeOffset RecentTo, string Month,
    ForgeFigures Fleet, IReadOnlyList<GeographyFigures> Geographies, IReadOnlyList<RegionFigures> Regions);

/// <summary>
/// Forge's global view for operators: per pool, region, geography and the whole fleet, capacity against PTUs sold, placed
/// and served. It reads the pools and documents kept per pool (<see cref="PoolUtilization"/>, <see cref="PoolMonth"/>,
/// <see cref="PoolMinute"/>), so it costs the pools and months, never the deployments or tenants.
/// </summary>
public static class GlobalViews
{
    public static readonly TimeSpan RecentWindow = TimeSpan.FromMinutes(5);

    /// <summary>A pool's figures as sums, so that regions, geographies and the fleet add them before dividing.</summary>
    readonly record struct Tally(decimal Capacity, decimal Sold, decimal Placed, decimal RecentTokens, decimal RecentCapacityTokens, decimal MonthTokens, decimal MonthCapacityTokens)
    {
        public static Tally operator +(Tally a, Tally b) => new(a.Capacity + b.Capacity, a.Sold + b.Sold, a.Placed + b.Placed, a.RecentTokens + b.RecentTokens,
            a.RecentCapacityTokens + b.RecentCapacityTokens, a.MonthTokens + b.MonthTokens, a.MonthCapacityTokens + b.MonthCapacityTokens);

        public ForgeFigures Figures() => new(Capacity, Sold, Placed, Ratio(Sold, Capacity), Ratio(Placed, Capacity),
            RecentTokens, Ratio(RecentTokens, RecentCapacityTokens), MonthTokens, Ratio(MonthTokens, MonthCapacityTokens));

        static decimal Ratio(decimal part, decimal whole) => whole == 0 ? 0 : decimal.Round(part / whole, 4, MidpointRounding.AwayFromZero);
    }

    /// <param name="pools">The pools to show.</param>
    /// <param name="utilization">The pools' utilization documents up to and including this month.</param>
    /// <param name="months">The pools' capacity documents up to and including this month.</param>
    /// <param name="minutes">The pools' minute slots.</param>
    public static GlobalView Of(IEnumerable<CapacityPool> pools, IEnumerable<PoolUtilization> utilization, IEnumerable<PoolMonth> months, IEnumerable<PoolMinute> minutes,
        ModelCatalog catalog, DateTimeOffset now)
    {
        var month = BillingMonth.Of(now);
        var recentTo = PoolMinute.MinuteOf(now);
        var recentFrom = recentTo - RecentWindow;
        var byPool = utilization.ToLookup(u => u.PoolId, StringComparer.Ordinal);
        var monthsByPool = months.ToLookup(m => m.PoolId, StringComparer.Ordinal);
        var recent = minutes.Where(m => m.Minute >= recentFrom && m.Minute < recentTo).ToLookup(m => m.PoolId, StringComparer.Ordinal);

        var tallies = pools.OrderBy(p => p.Region, StringComparer.Ordinal).ThenBy(p => p.Model, StringComparer.Ordinal).Select(pool =>
        {
            var perMinute = catalog.Find(pool.Model)?.InputTokensPerMinutePerPtu ?? 0;
            var capacitySeconds = LevelChanges.Integral(monthsByPool[pool.Id].Select(m => (m.Period, m.Capacity)), month, now);
            return (Pool: pool, Tally: new Tally(pool.Capacity,
                byPool[pool.Id].Where(u => u.Period <= month.Index).Sum(u => u.Bought.Sum),
                pool.Sold,
                recent[pool.Id].Sum(m => m.WeightedTokens),
                pool.Capacity * perMinute * (decimal)RecentWindow.TotalMinutes,
                byPool[pool.Id].Where(u => u.Period == month.Index).Sum(u => u.Served),
                capacitySeconds * perMinute / 60m));
        }).ToList();

        string GeographyOf(string region) => catalog.GeographyOf(region) ?? region;
        var regions = tallies.GroupBy(t => t.Pool.Region, StringComparer.Ordinal)
            .Select(g => new RegionFigures(g.Key, GeographyOf(g.Key), g.Aggregate(default(Tally), (sum, t) => sum + t.Tally).Figures(),
                [.. g.Select(t => new PoolFigures(t.Pool.Model, t.Tally.Figures()))]))
            .ToList();
        var geographies = tallies.GroupBy(t => GeographyOf(t.Pool.Region), StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new GeographyFigures(g.Key, [.. g.Select(t => t.Pool.Region).Distinct(StringComparer.Ordinal)],
                g.Aggregate(default(Tally), (sum, t) => sum + t.Tally).Figures()))
            .ToList();
        var fleet = tallies.Aggregate(default(Tally), (sum, t) => sum + t.Tally).Figures();
        return new GlobalView(now, recentFrom, recentTo, month.ToString(), fleet, geographies, regions);
    }

    public static IEndpointRouteBuilder MapGlobalView(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapGet("/v1/operator/global-view", async Task<Results<Ok<GlobalView>, ProblemHttpResult>> (string? model, string? geography, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                if (model is not null && catalog.Find(model) is null)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["model"] = ["Unknown model; GET /v1/models lists them."] });
                if (geography is not null && catalog.Geographies?.ContainsKey(geography) != true)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["geography"] = [$"Unknown geography; the catalog names {string.Join(", ", catalog.Geographies?.Keys ?? [])}."] });
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now).Index;
                var pools = (await session.Query<CapacityPool>().Where(p => model == null || p.Model == model).ToListAsync(ct))
                    .Where(p => geography is null || catalog.GeographyOf(p.Region) == geography).ToList();
                var ids = pools.Select(p => p.Id).ToHashSet(StringComparer.Ordinal);
                var utilization = await session.Query<PoolUtilization>().Where(m => m.Period <= period).ToListAsync(ct);
                var months = await session.Query<PoolMonth>().Where(m => m.Period <= period).ToListAsync(ct);
                var minutes = await session.Query<PoolMinute>().ToListAsync(ct);
                return TypedResults.Ok(Of(pools, utilization.Where(u => ids.Contains(u.PoolId)), months.Where(m => ids.Contains(m.PoolId)),
                    minutes.Where(m => ids.Contains(m.PoolId)), catalog, now));
            })
            .RequireAuthorization(Policies.Operator).WithTags("Operator: capacity").WithName("GetGlobalView")
            .WithSummary("Forge's global view: per region (with its pools), per geography and for the fleet, capacity, PTUs sold and placed, sold ÷ capacity, and served utilization (served weighted tokens ÷ capacity) over the last 5 whole minutes and this month. Optionally for one model or one geography; the fleet figures are then those of what is shown.")
            .ProducesProblem(400);
        return app;
    }
}
