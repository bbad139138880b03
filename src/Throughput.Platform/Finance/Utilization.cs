using System.Collections.Immutable;
using Marten;
using Throughput.Capacity;
using Throughput.Http;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>Deployment-hours of one pool (model and region) in a month whose utilization fell in one band; idle hours had no usage at all.</summary>
/// <param name="Month">The month, yyyy-MM (UTC).</param>
/// <param name="Model">The pool's model.</param>
/// <param name="Region">The pool's region.</param>
/// <param name="Band">The utilization band: idle (no usage), 0-10%, …, 90-100%, >=100%.</param>
/// <param name="DeploymentHours">Deployment-hours whose utilization fell in the band.</param>
/// <param name="Share">Those hours ÷ all the pool's deployment-hours in the month.</param>
public sealed record UtilizationRow(string Month, string Model, string Region, string Band, decimal DeploymentHours, decimal Share);

/// <summary>
/// How much of what was sold was used: each deployment-hour's weighted tokens over what its PTUs admit in an hour,
/// in bands of 10%. Provisioned hours with no usage count as idle, so the distribution covers all that was sold. A
/// deployment's hours count in the pools it is placed in, shared in proportion to its placed PTUs (see <see cref="PoolUtilization"/>).
/// </summary>
public static class UtilizationView
{
    static readonly string[] Bands = ["idle", "0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%", "60-70%", "70-80%", "80-90%", "90-100%", ">=100%"];

    static readonly Column<UtilizationRow>[] Columns =
    [
        new("month", r => r.Month), new("model", r => r.Model), new("region", r => r.Region), new("band", r => r.Band),
        new("deployment_hours", r => Tables.Number(r.DeploymentHours)), new("share", r => Tables.Number(r.Share)),
    ];

    public static string BandOf(decimal utilization) =>
        utilization >= 1 ? ">=100%" : Bands[1 + (int)decimal.Floor(Math.Max(0, utilization) * 10)];

    /// <summary>One pool's rows: its used deployment-hours by band, and the hours its deployments held PTUs without usage as idle.</summary>
    public static IEnumerable<UtilizationRow> Of(BillingMonth month, CapacityPool pool, IReadOnlyDictionary<string, decimal> usedHours, decimal provisionedHours)
    {
        var bands = usedHours.Where(b => b.Value != 0).ToDictionary(b => b.Key, b => b.Value);
        bands["idle"] = Math.Max(0, provisionedHours - bands.Values.Sum());
        var total = bands.Values.Sum();
        return Bands.Where(bands.ContainsKey).Select(b => new UtilizationRow(month.ToString(), pool.Model, pool.Region, b, decimal.Round(bands[b], 2, MidpointRounding.AwayFromZero),
            total == 0 ? 0 : decimal.Round(bands[b] / total, 4, MidpointRounding.AwayFromZero)));
    }

    /// <param name="months">Every month document of the pools up to and including <paramref name="month"/>.</param>
    public static IReadOnlyList<UtilizationRow> Of(IEnumerable<PoolUtilization> months, IReadOnlyDictionary<string, CapacityPool> pools, BillingMonth month, DateTimeOffset now) =>
        months.GroupBy(m => m.PoolId, StringComparer.Ordinal)
            .Where(g => pools.ContainsKey(g.Key))
            .OrderBy(g => pools[g.Key].Model, StringComparer.Ordinal).ThenBy(g => pools[g.Key].Region, StringComparer.Ordinal)
            .SelectMany(g =>
            {
                var provisioned = LevelChanges.Integral(g.Select(m => (m.Period, m.Deployed)), month, now) / 3600m;
                var used = g.SingleOrDefault(m => m.Period == month.Index)?.UsedHours ?? ImmutableDictionary<string, decimal>.Empty;
                return Of(month, pools[g.Key], used, provisioned);
            })
            .Where(r => r.DeploymentHours > 0)
            .ToList();

    public static RouteGroupBuilder MapUtilization(this RouteGroupBuilder finance)
    {
        finance.MapGet("/utilization", async (string? month, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now);
                if (month is not null && !BillingMonth.TryParse(month, out period))
                    return BillingMonth.Problem("month", month);
                var months = await session.Query<PoolUtilization>().Where(m => m.Period <= period.Index).ToListAsync(ct);
                var pools = await session.LoadManyAsync<CapacityPool>(ct, months.Select(m => m.PoolId).Distinct());
                return Tables.Respond(http, Of(months, pools.ToDictionary(p => p.Id, StringComparer.Ordinal), period, now), $"utilization-{period}", Columns);
            })
            .WithName("GetUtilization")
            .WithSummary("Deployment-hours by utilization band (idle, 0-10% … >=100%) per pool (model and region) for a month (default this one). JSON or CSV.")
            .Produces<IReadOnlyList<UtilizationRow>>(200, "application/json", "text/csv").ProducesValidationProblem();
        return finance;
    }
}
