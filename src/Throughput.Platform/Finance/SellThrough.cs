using Marten;
using Marten.Events.Projections;
using Throughput.Capacity;
using Throughput.Http;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>
/// A capacity pool's changes in one month: its capacity and the PTUs it sold. The month's PTU-hours follow from these
/// and the earlier months' changes, so neither a purchase nor a read costs more as a pool sells to more deployments.
/// </summary>
public sealed record PoolMonth(string Id, string PoolId, int Period, LevelChanges Capacity, LevelChanges Sold)
{
    public static string IdOf(string poolId, DateTimeOffset at) => $"{poolId}|{BillingMonth.Of(at).Index}";

    public static PoolMonth Empty(string poolId, DateTimeOffset at) => new(IdOf(poolId, at), poolId, BillingMonth.Of(at).Index, default, default);

    public PoolMonth Then(DateTimeOffset at, decimal capacityChange, decimal soldChange)
    {
        var month = BillingMonth.FromIndex(Period);
        return this with { Capacity = Capacity.Add(capacityChange, month, at), Sold = Sold.Add(soldChange, month, at) };
    }
}

public sealed partial class PoolMonthProjection : MultiStreamProjection<PoolMonth, string>
{
    public PoolMonthProjection()
    {
        Name = "PoolMonth";
        Identity<PoolOpened>(e => PoolMonth.IdOf(e.PoolId, e.OpenedAt));
        Identity<CapacityAdded>(e => PoolMonth.IdOf(e.PoolId, e.At));
        Identity<CapacityRemoved>(e => PoolMonth.IdOf(e.PoolId, e.At));
        Identity<PtusAllocated>(e => PoolMonth.IdOf(e.PoolId, e.At));
        Identity<PtusFreed>(e => PoolMonth.IdOf(e.PoolId, e.At));
    }

    public static PoolMonth Create(PoolOpened e) => PoolMonth.Empty(e.PoolId, e.OpenedAt);

    public static PoolMonth Create(CapacityAdded e) => PoolMonth.Empty(e.PoolId, e.At).Then(e.At, e.Ptu, 0);

    public static PoolMonth Create(CapacityRemoved e) => PoolMonth.Empty(e.PoolId, e.At).Then(e.At, -e.Ptu, 0);

    public static PoolMonth Create(PtusAllocated e) => PoolMonth.Empty(e.PoolId, e.At).Then(e.At, 0, e.Ptu);

    public static PoolMonth Create(PtusFreed e) => PoolMonth.Empty(e.PoolId, e.At).Then(e.At, 0, -e.Ptu);

    public static PoolMonth Apply(CapacityAdded e, PoolMonth month) => month.Then(e.At, e.Ptu, 0);

    public static PoolMonth Apply(CapacityRemoved e, PoolMonth month) => month.Then(e.At, -e.Ptu, 0);

    public static PoolMonth Apply(PtusAllocated e, PoolMonth month) => month.Then(e.At, 0, e.Ptu);

    public static PoolMonth Apply(PtusFreed e, PoolMonth month) => month.Then(e.At, 0, -e.Ptu);
}

/// <summary>PTU-hours sold versus PTU-hours of capacity, per pool, over a month (to date while it runs).</summary>
/// <param name="Month">The month, yyyy-MM (UTC).</param>
/// <param name="Model">The pool's model.</param>
/// <param name="Region">The pool's region.</param>
/// <param name="CapacityPtuHours">PTU-hours of capacity in the month.</param>
/// <param name="SoldPtuHours">PTU-hours deployed in the pool.</param>
/// <param name="SellThrough">Sold ÷ capacity PTU-hours.</param>
public sealed record SellThroughRow(string Month, string Model, string Region, decimal CapacityPtuHours, decimal SoldPtuHours, decimal SellThrough);

public static class SellThroughView
{
    static readonly Column<SellThroughRow>[] Columns =
    [
        new("month", r => r.Month), new("model", r => r.Model), new("region", r => r.Region),
        new("capacity_ptu_hours", r => Tables.Number(r.CapacityPtuHours)), new("sold_ptu_hours", r => Tables.Number(r.SoldPtuHours)),
        new("sell_through", r => Tables.Number(r.SellThrough)),
    ];

    /// <summary>One row per pool with capacity or sales in the month, to <paramref name="now"/> while it runs.</summary>
    /// <param name="months">Every month document of the pools up to and including <paramref name="month"/>.</param>
    public static IReadOnlyList<SellThroughRow> Of(IEnumerable<PoolMonth> months, IReadOnlyDictionary<string, CapacityPool> pools, BillingMonth month, DateTimeOffset now) =>
        months.GroupBy(m => m.PoolId, StringComparer.Ordinal)
            .Where(g => pools.ContainsKey(g.Key))
            .Select(g =>
            {
                var capacity = LevelChanges.Integral(g.Select(m => (m.Period, m.Capacity)), month, now);
                var sold = LevelChanges.Integral(g.Select(m => (m.Period, m.Sold)), month, now);
                var pool = pools[g.Key];
                return new SellThroughRow(month.ToString(), pool.Model, pool.Region, Hours(capacity), Hours(sold),
                    capacity == 0 ? 0 : decimal.Round(sold / capacity, 4, MidpointRounding.AwayFromZero));
            })
            .Where(r => r.CapacityPtuHours > 0 || r.SoldPtuHours > 0)
            .OrderBy(r => r.Model, StringComparer.Ordinal).ThenBy(r => r.Region, StringComparer.Ordinal)
            .ToList();

    static decimal Hours(decimal ptuSeconds) => decimal.Round(ptuSeconds / 3600m, 6, MidpointRounding.AwayFromZero);

    public static RouteGroupBuilder MapSellThrough(this RouteGroupBuilder finance)
    {
        finance.MapGet("/sell-through", async (string? month, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now);
                if (month is not null && !BillingMonth.TryParse(month, out period))
                    return BillingMonth.Problem("month", month);
                var months = await session.Query<PoolMonth>().Where(m => m.Period <= period.Index).ToListAsync(ct);
                var pools = await session.LoadManyAsync<CapacityPool>(ct, months.Select(m => m.PoolId).Distinct());
                return Tables.Respond(http, Of(months, pools.ToDictionary(p => p.Id, StringComparer.Ordinal), period, now), $"sell-through-{period}", Columns);
            })
            .WithName("GetSellThrough")
            .WithSummary("PTU-hours sold versus pool capacity per model and region for a month (default this one, to date). JSON or CSV.")
            .Produces<IReadOnlyList<SellThroughRow>>(200, "application/json", "text/csv").ProducesValidationProblem();
        return finance;
    }
}
