using Marten;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>Deployment-hours of one model in a month whose utilization fell in one band; idle hours had no usage at all.</summary>
public sealed record UtilizationRow(string Month, string Model, string Band, decimal DeploymentHours, decimal Share);

/// <summary>
/// How much of what was sold was used: each deployment-hour's weighted tokens over what its PTUs admit in an hour,
/// in bands of 10%. Provisioned hours with no usage count as idle, so the distribution covers all that was sold.
/// </summary>
public static class UtilizationView
{
    static readonly string[] Bands = ["idle", "0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%", "60-70%", "70-80%", "80-90%", "90-100%", ">=100%"];

    static readonly Column<UtilizationRow>[] Columns =
    [
        new("month", r => r.Month), new("model", r => r.Model), new("band", r => r.Band),
        new("deployment_hours", r => RevenueView.Number(r.DeploymentHours)), new("share", r => RevenueView.Number(r.Share)),
    ];

    public static string BandOf(decimal utilization) =>
        utilization >= 1 ? ">=100%" : Bands[1 + (int)decimal.Floor(Math.Max(0, utilization) * 10)];

    public static IReadOnlyList<UtilizationRow> Of(BillingMonth month, IEnumerable<(string Model, decimal Utilization)> usedHours, IReadOnlyDictionary<string, decimal> provisionedHoursByModel)
    {
        var counted = usedHours.GroupBy(h => h.Model, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.GroupBy(h => BandOf(h.Utilization)).ToDictionary(b => b.Key, b => (decimal)b.Count()), StringComparer.Ordinal);
        var rows = new List<UtilizationRow>();
        foreach (var model in counted.Keys.Union(provisionedHoursByModel.Keys).Order(StringComparer.Ordinal))
        {
            var bands = counted.GetValueOrDefault(model) ?? [];
            var used = bands.Values.Sum();
            bands["idle"] = Math.Max(0, provisionedHoursByModel.GetValueOrDefault(model) - used);
            var total = bands.Values.Sum();
            rows.AddRange(Bands.Where(bands.ContainsKey).Select(b => new UtilizationRow(month.ToString(), model, b, decimal.Round(bands[b], 2, MidpointRounding.AwayFromZero),
                total == 0 ? 0 : decimal.Round(bands[b] / total, 4, MidpointRounding.AwayFromZero))));
        }
        return rows;
    }

    public static RouteGroupBuilder MapUtilization(this RouteGroupBuilder finance)
    {
        finance.MapGet("/utilization", async (string? month, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now);
                if (month is not null && !BillingMonth.TryParse(month, out period))
                    return BillingMonth.Problem("month", month);
                var hours = await session.Query<UsageHour>().Where(h => h.Period == period.Index).ToListAsync(ct);
                var accounts = await session.Query<BillingAccount>().ToListAsync(ct);
                var deployments = accounts.SelectMany(a => a.Deployments.Values).ToDictionary(d => d.Id, StringComparer.Ordinal);
                var end = now < period.End ? now : period.End;
                var provisioned = deployments.Values.GroupBy(d => d.Model, StringComparer.Ordinal)
                    .ToDictionary(g => g.Key, g => g.Sum(d => InvoiceCalculation.DeployedSeconds(d, period.Start, end)) / 3600m, StringComparer.Ordinal);
                var used = hours.Where(h => deployments.ContainsKey(h.DeploymentId)).Select(h => (deployments[h.DeploymentId].Model, h.Utilization));
                return Tables.Respond(http, Of(period, used, provisioned), $"utilization-{period}", Columns);
            })
            .WithName("GetUtilization")
            .WithSummary("Deployment-hours by utilization band (idle, 0-10% … >=100%) per model for a month (default this one). JSON or CSV.")
            .Produces<IReadOnlyList<UtilizationRow>>().Produces(200, contentType: "text/csv").ProducesValidationProblem();
        return finance;
    }
}
