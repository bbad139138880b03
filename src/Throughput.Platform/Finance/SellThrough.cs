using System.Collections.Immutable;
using Marten;
using Marten.Events.Projections;
using Throughput.Capacity;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>A pool's capacity and PTUs sold from <see cref="At"/> on.</summary>
public sealed record PoolLevel(DateTimeOffset At, decimal Capacity, decimal Sold);

/// <summary>A capacity pool's levels over time, from which PTU-hours of capacity and of sales in any period follow.</summary>
public sealed record PoolCapacity(string Id, string Model, string Region, ImmutableList<PoolLevel> Levels)
{
    PoolLevel Last => Levels is [.., var last] ? last : new PoolLevel(DateTimeOffset.MinValue, 0, 0);

    public PoolCapacity Then(DateTimeOffset at, decimal capacityDelta, decimal soldDelta) =>
        this with { Levels = Levels.Add(new PoolLevel(at, Last.Capacity + capacityDelta, Last.Sold + soldDelta)) };

    /// <summary>Capacity and sold PTU-seconds between the two instants.</summary>
    public (decimal Capacity, decimal Sold) PtuSeconds(DateTimeOffset from, DateTimeOffset to)
    {
        decimal capacity = 0, sold = 0;
        for (var i = 0; i < Levels.Count; i++)
        {
            var start = Levels[i].At > from ? Levels[i].At : from;
            var end = i + 1 < Levels.Count && Levels[i + 1].At < to ? Levels[i + 1].At : to;
            if (end <= start) continue;
            var seconds = (decimal)(end - start).TotalSeconds;
            capacity += Levels[i].Capacity * seconds;
            sold += Levels[i].Sold * seconds;
        }
        return (capacity, sold);
    }
}

public sealed partial class PoolCapacityProjection : MultiStreamProjection<PoolCapacity, string>
{
    public PoolCapacityProjection()
    {
        Name = "PoolCapacity";
        Identity<PoolOpened>(e => e.PoolId);
        Identity<CapacityAdded>(e => e.PoolId);
        Identity<CapacityRemoved>(e => e.PoolId);
        Identity<PtusAllocated>(e => e.PoolId);
        Identity<PtusFreed>(e => e.PoolId);
    }

    public static PoolCapacity Create(PoolOpened e) => new(e.PoolId, e.Model, e.Region, [new PoolLevel(e.OpenedAt, 0, 0)]);

    public static PoolCapacity Apply(CapacityAdded e, PoolCapacity pool) => pool.Then(e.At, e.Ptu, 0);

    public static PoolCapacity Apply(CapacityRemoved e, PoolCapacity pool) => pool.Then(e.At, -e.Ptu, 0);

    public static PoolCapacity Apply(PtusAllocated e, PoolCapacity pool) => pool.Then(e.At, 0, e.Ptu);

    public static PoolCapacity Apply(PtusFreed e, PoolCapacity pool) => pool.Then(e.At, 0, -e.Ptu);
}

/// <summary>PTU-hours sold versus PTU-hours of capacity, per pool, over a month (to date while it runs).</summary>
public sealed record SellThroughRow(string Month, string Model, string Region, decimal CapacityPtuHours, decimal SoldPtuHours, decimal SellThrough);

public static class SellThroughView
{
    static readonly Column<SellThroughRow>[] Columns =
    [
        new("month", r => r.Month), new("model", r => r.Model), new("region", r => r.Region),
        new("capacity_ptu_hours", r => RevenueView.Number(r.CapacityPtuHours)), new("sold_ptu_hours", r => RevenueView.Number(r.SoldPtuHours)),
        new("sell_through", r => RevenueView.Number(r.SellThrough)),
    ];

    public static IReadOnlyList<SellThroughRow> Of(IEnumerable<PoolCapacity> pools, BillingMonth month, DateTimeOffset now)
    {
        var end = now < month.End ? now : month.End;
        return pools.OrderBy(p => p.Model, StringComparer.Ordinal).ThenBy(p => p.Region, StringComparer.Ordinal)
            .Select(p =>
            {
                var (capacity, sold) = end > month.Start ? p.PtuSeconds(month.Start, end) : (0, 0);
                return new SellThroughRow(month.ToString(), p.Model, p.Region, Hours(capacity), Hours(sold), capacity == 0 ? 0 : decimal.Round(sold / capacity, 4, MidpointRounding.AwayFromZero));
            })
            .Where(r => r.CapacityPtuHours > 0 || r.SoldPtuHours > 0)
            .ToList();
    }

    static decimal Hours(decimal ptuSeconds) => decimal.Round(ptuSeconds / 3600m, 6, MidpointRounding.AwayFromZero);

    public static RouteGroupBuilder MapSellThrough(this RouteGroupBuilder finance)
    {
        finance.MapGet("/sell-through", async (string? month, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now);
                if (month is not null && !BillingMonth.TryParse(month, out period))
                    return BillingMonth.Problem("month", month);
                var pools = await session.Query<PoolCapacity>().ToListAsync(ct);
                return Tables.Respond(http, Of(pools, period, now), $"sell-through-{period}", Columns);
            })
            .WithName("GetSellThrough")
            .WithSummary("PTU-hours sold versus pool capacity per model and region for a month (default this one, to date). JSON or CSV.")
            .Produces<IReadOnlyList<SellThroughRow>>().Produces(200, contentType: "text/csv").ProducesValidationProblem();
        return finance;
    }
}
