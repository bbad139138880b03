using Marten;
using Throughput.Access;
using Throughput.Http;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>Finance reads everything: the invoice register, credit notes, revenue, sell-through, utilization; each as JSON or CSV.</summary>
public static class FinanceApi
{
    static readonly Column<InvoiceSummary>[] RegisterColumns =
    [
        new("number", i => i.DocumentNumber), new("invoice_id", i => i.Id), new("tenant_id", i => i.TenantId), new("month", i => i.Month),
        new("currency", i => i.Currency), new("total", i => Money.Text(i.Total, i.Currency)), new("credited", i => Money.Text(i.Credited, i.Currency)),
        new("balance", i => Money.Text(i.Balance, i.Currency)), new("lines", i => i.Lines.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        new("issued_at", i => Tables.Instant(i.IssuedAt)), new("issued_by", i => i.IssuedBy), new("tenant_name", i => i.TenantName),
    ];

    static readonly Column<CreditNote>[] CreditNoteColumns =
    [
        new("number", c => c.DocumentNumber), new("credit_note_id", c => c.Id), new("invoice_number", c => c.InvoiceNumber), new("tenant_id", c => c.TenantId),
        new("invoice_month", c => c.InvoiceMonth), new("currency", c => c.Currency), new("total", c => Money.Text(c.Total, c.Currency)),
        new("reason", c => c.Reason), new("issued_at", c => Tables.Instant(c.IssuedAt)),
        new("issued_by", c => c.IssuedBy),
    ];

    public static IEndpointRouteBuilder MapFinance(this IEndpointRouteBuilder app)
    {
        var finance = app.MapGroup("/v1/finance").RequireAuthorization(Policies.Finance).WithTags("Finance");

        finance.MapGet("/invoices", async (string? month, long? after, int? limit, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                if (!TryMonth(month, clock, out var period)) return BillingMonth.Problem("month", month);
                return await Tables.RespondPagedAsync(http, after, limit, async (from, take, token) =>
                        (await session.Query<Invoice>().Where(i => i.Period == period.Index && i.Number > from).OrderBy(i => i.Number).Take(take).ToListAsync(token))
                            .Select(InvoiceSummary.Of).ToList(),
                    i => i.Number, $"invoices-{period}", RegisterColumns, ct);
            })
            .WithName("GetInvoiceRegister")
            .WithSummary("The invoices issued for a billing month (default: last month), by number: JSON in pages (?limit=, ?after=, Link rel=next), or all as CSV.")
            .Produces<IReadOnlyList<InvoiceSummary>>(200, "application/json", "text/csv").ProducesValidationProblem();

        finance.MapGet("/invoices/{invoiceId}", async (string invoiceId, HttpContext http, IQuerySession session, CancellationToken ct) =>
                await session.LoadAsync<Invoice>(invoiceId, ct) is { } invoice ? InvoiceLines.Respond(http, invoice) : throw RuleViolation.NotFound($"No invoice '{invoiceId}'."))
            .WithName("GetAnyInvoice").WithSummary("Any issued invoice; its lines as CSV with ?format=csv or Accept: text/csv; its document as a PDF with ?format=pdf or Accept: application/pdf.")
            .Produces<Invoice>(200, "application/json", "text/csv", InvoiceDocument.ContentType).ProducesProblem(404);

        finance.MapGet("/drafts/{tenantId}", async Task<Results<Ok<InvoiceDraft>, ProblemHttpResult>> (string tenantId, string? month, IQuerySession session, TimeProvider clock, InvoicingSettings settings, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now);
                if (month is not null && !BillingMonth.TryParse(month, out period)) return BillingMonth.Problem("month", month);
                return TypedResults.Ok(await Invoices.DraftAsync(session, tenantId, period, now, settings, ct));
            })
            .WithName("GetTenantDraft").WithSummary("A tenant's invoice draft for a month (default this one).").ProducesProblem(404);

        finance.MapGet("/credit-notes", async (string? month, long? after, int? limit, HttpContext http, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                if (!TryMonth(month, clock, out var period)) return BillingMonth.Problem("month", month);
                return await Tables.RespondPagedAsync<CreditNote>(http, after, limit, async (from, take, token) =>
                        await session.Query<CreditNote>().Where(c => c.Period == period.Index && c.Number > from).OrderBy(c => c.Number).Take(take).ToListAsync(token),
                    c => c.Number, $"credit-notes-{period}", CreditNoteColumns, ct);
            })
            .WithName("ListCreditNotes")
            .WithSummary("Credit notes issued in a month (default: last month), by number: JSON in pages (?limit=, ?after=, Link rel=next), or all as CSV.")
            .Produces<IReadOnlyList<CreditNote>>(200, "application/json", "text/csv").ProducesValidationProblem();

        finance.MapGet("/accrued", async Task<Results<Ok<IReadOnlyList<AccruedRevenue>>, ProblemHttpResult>> (string? month, IQuerySession session, TimeProvider clock, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now);
                if (month is not null && !BillingMonth.TryParse(month, out period)) return BillingMonth.Problem("month", month);
                return TypedResults.Ok(await Accruals.ReadAsync(session, period, now, ct));
            })
            .WithName("GetAccruedRevenue")
            .WithSummary("Accrued revenue of a month (default this one) per currency: what its invoices not yet issued bill up to now, from the drafts as the read models hold them (a few seconds behind the log), with asOf. A month whose invoices are all issued has none: its revenue is GET /v1/finance/revenue.")
            .ProducesValidationProblem();

        finance.MapRevenue();
        finance.MapSellThrough();
        finance.MapUtilization();
        return app;
    }

    /// <summary>Registers default to last month: the one being invoiced.</summary>
    static bool TryMonth(string? text, TimeProvider clock, out BillingMonth month)
    {
        month = BillingMonth.FromIndex(BillingMonth.Of(clock.GetUtcNow()).Index - 1);
        return text is null || BillingMonth.TryParse(text, out month);
    }
}
