using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>A draft's spillover line for one token type: tokens, and the amount billed for them.</summary>
public readonly record struct SpilloverLine(long Tokens, decimal Amount);

/// <summary>What the deployment's tenant is billed in its invoice draft(s): the spillover lines by token type, the other lines, the total.</summary>
public sealed record DraftBill(IReadOnlyDictionary<string, SpilloverLine> Spillover, decimal OtherLines, decimal Total, int Months);

/// <summary>
/// One deployment's usage as the platform bills it, read through its tenant's API three independent ways: the deployment's
/// metered totals (the write model's inline snapshot), the per-minute usage series (an async projection) and the invoice
/// draft (the async billing account, through the invoice arithmetic).
/// </summary>
public sealed record BilledUsage(UsageFigures MeteredTotals, UsageFigures UsageSeries, UsageFigures InvoiceDraft, DraftBill Bill)
{
    public static readonly IReadOnlyList<(string Name, Func<BilledUsage, UsageFigures> Of)> Views =
    [
        ("metered totals", b => b.MeteredTotals),
        ("usage series", b => b.UsageSeries),
        ("invoice draft", b => b.InvoiceDraft),
    ];

    public static async Task<BilledUsage> ReadAsync(DrillDeployment deployment, DateTimeOffset since, CancellationToken ct)
    {
        var tenant = deployment.Customer.Tenant;
        var id = deployment.Id;
        var totals = await tenant.GetFromJsonAsync<JsonElement>($"/v1/deployments/{id}/usage/totals", ct);
        var bucket = (await tenant.GetFromJsonAsync<JsonElement>($"/v1/deployments/{id}", ct)).GetProperty("bucket");
        var metered = UsageFigures.Of(
            (Measure.Records, Long(totals, "records")), (Measure.Prompt, Long(totals, "promptTokens")), (Measure.Cached, Long(totals, "cachedTokens")),
            (Measure.Output, Long(totals, "outputTokens")), (Measure.Weighted, bucket.GetProperty("weightedTokens").GetDecimal()),
            (Measure.SpilledRecords, Long(bucket, "spilledRecords")));

        var now = DateTimeOffset.UtcNow;
        var minutes = await tenant.GetFromJsonAsync<JsonElement>($"/v1/deployments/{id}/usage?from={Stamp(since.AddMinutes(-1))}&to={Stamp(now.AddMinutes(1))}", ct);
        var series = UsageFigures.None;
        foreach (var m in minutes.EnumerateArray())
        {
            series = series.Plus(UsageFigures.Of(
                (Measure.Records, Long(m, "records")), (Measure.Prompt, Long(m, "promptTokens")), (Measure.Cached, Long(m, "cachedTokens")),
                (Measure.Output, Long(m, "outputTokens")), (Measure.Weighted, m.GetProperty("weightedTokens").GetDecimal()),
                (Measure.SpilledRecords, Long(m, "spilledRecords")), (Measure.SpilledTokens, Long(m, "spilledTokens"))));
        }

        var draft = UsageFigures.None;
        var spillover = new Dictionary<string, SpilloverLine>(StringComparer.Ordinal);
        decimal other = 0, total = 0;
        var months = Months(since, now);
        foreach (var month in months)
        {
            var bill = await tenant.GetFromJsonAsync<JsonElement>($"/v1/invoices/draft?month={month}", ct);
            foreach (var usage in bill.GetProperty("usage").EnumerateArray())
            {
                if (usage.GetProperty("deploymentId").GetString() != id) continue;
                var t = usage.GetProperty("tokens");
                draft = draft.Plus(UsageFigures.Of(
                    (Measure.Records, Long(t, "records")), (Measure.Prompt, Long(t, "promptTokens")), (Measure.Cached, Long(t, "cachedTokens")),
                    (Measure.Output, Long(t, "outputTokens")), (Measure.SpilledPrompt, Long(t, "spilledPromptTokens")),
                    (Measure.SpilledCached, Long(t, "spilledCachedTokens")), (Measure.SpilledOutput, Long(t, "spilledOutputTokens"))));
            }
            foreach (var line in bill.GetProperty("lines").EnumerateArray())
            {
                var amount = line.GetProperty("amount").GetDecimal();
                if (line.GetProperty("kind").GetString() == "Spillover" && line.GetProperty("deploymentId").GetString() == id)
                {
                    var type = line.GetProperty("tokenType").GetString()!;
                    var sum = spillover.GetValueOrDefault(type);
                    spillover[type] = new SpilloverLine(sum.Tokens + Long(line, "tokens"), sum.Amount + amount);
                }
                else
                {
                    other += amount;
                }
            }
            total += bill.GetProperty("total").GetDecimal();
        }
        return new BilledUsage(metered, series, draft, new DraftBill(spillover, other, total, months.Count));
    }

    /// <summary>The billing months (UTC) from <paramref name="since"/> to <paramref name="until"/>.</summary>
    static List<string> Months(DateTimeOffset since, DateTimeOffset until)
    {
        var months = new List<string>();
        for (var m = new DateTime(since.UtcDateTime.Year, since.UtcDateTime.Month, 1, 0, 0, 0, DateTimeKind.Utc); m <= until.UtcDateTime; m = m.AddMonths(1))
            months.Add(m.ToString("yyyy-MM", CultureInfo.InvariantCulture));
        return months;
    }

    static long Long(JsonElement e, string name) => e.GetProperty(name).GetInt64();

    static string Stamp(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
}
