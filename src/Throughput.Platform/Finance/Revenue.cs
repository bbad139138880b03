using JasperFx.Events;
using Marten;
using Marten.Events.Projections;
using Throughput.Access;
using Throughput.Http;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>
/// Revenue of one month in one currency for one model, deployment type and region: what issued invoices billed
/// (by kind of line) and what credit notes took back. Invoices count in their billing month; a credit note counts in
/// the month it was issued, so a closed month's figures never change. A credit against a whole invoice has no model.
/// </summary>
/// <param name="Id">The row's id: month, currency, model, type and region.</param>
/// <param name="Month">The month, yyyy-MM (UTC).</param>
/// <param name="Period">Month as a sortable number: year × 12 + month − 1.</param>
/// <param name="Currency">The currency of its amounts.</param>
/// <param name="Model">The model; empty for a credit against a whole invoice.</param>
/// <param name="Type">The deployment type.</param>
/// <param name="Region">The region.</param>
/// <param name="Provisioned">Billed for provisioned PTU-hours.</param>
/// <param name="Reservations">Billed for reservations.</param>
/// <param name="Spillover">Billed for spilled tokens of the month, net of spillover above a cap.</param>
/// <param name="Adjustments">Billed as prior-period adjustments (spilled tokens of earlier months).</param>
/// <param name="Credited">Taken back by credit notes issued in the month.</param>
/// <param name="BilledPtuHours">PTU-hours billed (not covered by reservations).</param>
/// <param name="AdapterHosting">Billed for adapter hosting.</param>
public sealed record RevenueRow(
    string Id,
    string Month,
    int Period,
    string Currency,
    string Model,
    string Type,
    string Region,
    decimal Provisioned,
    decimal Reservations,
    decimal Spillover,
    decimal Adjustments,
    decimal Credited,
    decimal BilledPtuHours,
    decimal AdapterHosting = 0)
{
    /// <summary>Everything invoiced: provisioned, reservations, spillover, adjustments and adapter hosting.</summary>
    public decimal Invoiced => Provisioned + Reservations + Spillover + Adjustments + AdapterHosting;

    /// <summary>Invoiced less credited.</summary>
    public decimal Net => Invoiced - Credited;

    public static string KeyOf(string month, string currency, string model, string type, string region) => $"{month}|{currency}|{model}|{type}|{region}";

    public static RevenueRow Empty(string id)
    {
        var parts = id.Split('|');
        return new RevenueRow(id, parts[0], BillingMonth.Parse(parts[0]).Index, parts[1], parts[2], parts[3], parts[4], 0, 0, 0, 0, 0, 0);
    }

    public RevenueRow Add(InvoiceLine line) => line.Kind switch
    {
        InvoiceLineKind.SpilloverAboveCap when line.ServiceMonth == Month => this with { Spillover = Spillover + line.Amount },
        InvoiceLineKind.Provisioned => this with { Provisioned = Provisioned + line.Amount, BilledPtuHours = BilledPtuHours + line.Quantity },
        InvoiceLineKind.Reservation => this with { Reservations = Reservations + line.Amount },
        InvoiceLineKind.Spillover => this with { Spillover = Spillover + line.Amount },
        InvoiceLineKind.AdapterHosting => this with { AdapterHosting = AdapterHosting + line.Amount },
        _ => this with { Adjustments = Adjustments + line.Amount },
    };
}

public sealed class RevenueProjection : MultiStreamProjection<RevenueRow, string>
{
    public RevenueProjection()
    {
        Name = "Revenue";
        // Evolve is overridden, so no event types are inferred: without these the daemon would read it the whole log.
        IncludeType<InvoiceIssued>();
        IncludeType<CreditNoteIssued>();
        Identities<InvoiceIssued>(i => i.Lines.Select(l => KeyOf(i, l)).Distinct().ToList());
        Identities<CreditNoteIssued>(c => c.Lines.Select(l => KeyOf(c, l)).Distinct().ToList());
    }

    static string KeyOf(InvoiceIssued i, InvoiceLine l) => RevenueRow.KeyOf(i.Month, i.Currency, l.Model, l.Type.ToString(), l.Region);

    static string KeyOf(CreditNoteIssued c, CreditNoteLine l) =>
        RevenueRow.KeyOf(BillingMonth.Of(c.IssuedAt).ToString(), c.Currency, l.Model, l.Type?.ToString() ?? "", l.Region);

    public override RevenueRow? Evolve(RevenueRow? snapshot, string id, IEvent e)
    {
        var row = snapshot ?? RevenueRow.Empty(id);
        return e.Data switch
        {
            InvoiceIssued i => i.Lines.Where(l => KeyOf(i, l) == id).Aggregate(row, (r, l) => r.Add(l)),
            CreditNoteIssued c => row with { Credited = row.Credited + c.Lines.Where(l => KeyOf(c, l) == id).Sum(l => l.Amount) },
            _ => row,
        };
    }
}

public static class RevenueView
{
    static readonly Column<RevenueRow>[] Columns =
    [
        new("month", r => r.Month), new("currency", r => r.Currency), new("model", r => r.Model), new("deployment_type", r => r.Type),
        new("region", r => r.Region), new("provisioned", r => Money.Text(r.Provisioned, r.Currency)), new("reservations", r => Money.Text(r.Reservations, r.Currency)),
        new("spillover", r => Money.Text(r.Spillover, r.Currency)), new("prior_period_adjustments", r => Money.Text(r.Adjustments, r.Currency)),
        new("invoiced", r => Money.Text(r.Invoiced, r.Currency)), new("credited", r => Money.Text(r.Credited, r.Currency)), new("net", r => Money.Text(r.Net, r.Currency)),
        new("billed_ptu_hours", r => Tables.Number(r.BilledPtuHours)),
        // Last, so that a spreadsheet reading the columns by position before adapters existed reads them still.
        new("adapter_hosting", r => Money.Text(r.AdapterHosting, r.Currency)),
    ];

    public static RouteGroupBuilder MapRevenue(this RouteGroupBuilder finance)
    {
        finance.MapGet("/revenue", async (string? from, string? to, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                var now = BillingMonth.Of(clock.GetUtcNow());
                var (start, end) = (now, now);
                if (from is not null && !BillingMonth.TryParse(from, out start)) return BillingMonth.Problem("from", from);
                if (to is not null && !BillingMonth.TryParse(to, out end)) return BillingMonth.Problem("to", to);
                Dictionary<string, string[]> errors = [];
                if (errors.Count == 0 && (end < start || end.Index - start.Index > 120)) errors["to"] = ["to must not be before from, and at most 10 years after it."];
                if (errors.Count > 0) return Validation.Invalid(errors);
                var rows = await session.Query<RevenueRow>().Where(r => r.Period >= start.Index && r.Period <= end.Index).ToListAsync(ct);
                var ordered = rows.OrderBy(r => r.Period).ThenBy(r => r.Currency, StringComparer.Ordinal).ThenBy(r => r.Model, StringComparer.Ordinal)
                    .ThenBy(r => r.Type, StringComparer.Ordinal).ThenBy(r => r.Region, StringComparer.Ordinal).ToList();
                return Tables.Respond(http, ordered, $"revenue-{start}-{end}", Columns);
            })
            .WithName("GetRevenue")
            .WithSummary("Revenue by month × currency × model × deployment type × region from issued invoices and credit notes (from/to: yyyy-MM, default this month). JSON, or CSV with ?format=csv or Accept: text/csv.")
            .Produces<IReadOnlyList<RevenueRow>>(200, "application/json", "text/csv").ProducesValidationProblem();
        return finance;
    }

}
