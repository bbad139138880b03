using System.Globalization;
using Marten;
using Throughput.Access;
using Throughput.Http;
using Throughput.Tenants;

namespace Throughput.Invoicing;

/// <summary>A month's invoice as it stands: the lines so far (the whole month once it is over), until it is issued.</summary>
/// <param name="TenantId">The tenant billed.</param>
/// <param name="Month">The billing month, yyyy-MM (UTC).</param>
/// <param name="Currency">The ISO 4217 currency of every amount on it.</param>
/// <param name="PeriodStart">The month's first instant (UTC).</param>
/// <param name="PeriodEnd">The next month's first instant (UTC).</param>
/// <param name="AsOf">The moment the draft bills to: now during the month, the month's end after it.</param>
/// <param name="ClosesAt">When it is issued at the earliest: the month's end plus the grace period for late metering.</param>
/// <param name="Lines">What it bills so far, line by line.</param>
/// <param name="Total">The sum of its lines so far.</param>
/// <param name="Coverage">How reservations covered the deployed PTUs in the month.</param>
/// <param name="Usage">The usage it holds, per service month and deployment: spilled tokens are billed from it.</param>
/// <param name="ProjectedThrough">The sequence number of the last event the draft includes: it follows the event log by about a second.</param>
public sealed record InvoiceDraft(
    string TenantId,
    string Month,
    string Currency,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    DateTimeOffset AsOf,
    DateTimeOffset ClosesAt,
    IReadOnlyList<InvoiceLine> Lines,
    decimal Total,
    IReadOnlyList<ReservationCoverage> Coverage,
    IReadOnlyList<UsageEntry> Usage,
    long ProjectedThrough)
{
    public static InvoiceDraft Of(BillingAccount account, BillingMonth month, DateTimeOffset now, TimeSpan grace, IReadOnlyList<UsageEntry> usage, long projectedThrough)
    {
        var figures = InvoiceCalculation.Compute(account, month, now);
        return new InvoiceDraft(account.Id, month.ToString(), account.Currency, month.Start, month.End, now < month.End ? now : month.End,
            month.End + grace, figures.Lines, figures.Total, figures.Coverage, usage, projectedThrough);
    }
}

/// <summary>An issued invoice in a list: what it is, what it billed, what is left after credit notes.</summary>
/// <remarks><see cref="TenantName"/> is the bill-to name the invoice was issued with (its tenant id for invoices issued before names were kept).</remarks>
/// <param name="Id">The invoice's id.</param>
/// <param name="DocumentNumber">The number printed on it.</param>
/// <param name="TenantId">The tenant billed.</param>
/// <param name="TenantName">The bill-to name it was issued with.</param>
/// <param name="Month">The billing month, yyyy-MM (UTC).</param>
/// <param name="Currency">Its currency.</param>
/// <param name="Total">The sum of its lines.</param>
/// <param name="Credited">What credit notes took back.</param>
/// <param name="Balance">Total less credited.</param>
/// <param name="Lines">How many lines it has.</param>
/// <param name="IssuedAt">When it was issued.</param>
/// <param name="IssuedBy">The key id of whoever issued it, or automatic.</param>
/// <param name="Number">Its number in the register.</param>
public sealed record InvoiceSummary(string Id, string DocumentNumber, string TenantId, string TenantName, string Month, string Currency, decimal Total, decimal Credited, decimal Balance, int Lines, DateTimeOffset IssuedAt, string IssuedBy, long Number)
{
    public static InvoiceSummary Of(Invoice i) =>
        new(i.Id, i.DocumentNumber, i.TenantId, i.BillTo ?? i.TenantId, i.Month, i.Currency, i.Total, i.Credited, i.Balance, i.Lines.Count, i.IssuedAt, i.IssuedBy, i.Number);
}

/// <summary>Tenants read their own drafts and invoices; anything of another tenant does not exist for them (404).</summary>
public static class Invoices
{
    public static IEndpointRouteBuilder MapInvoices(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/invoices").RequireAuthorization(Policies.Tenant).WithTags("Invoices");

        group.MapGet("/", async (HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var invoices = await session.Query<Invoice>().Where(i => i.TenantId == tenantId).OrderBy(i => i.Period).ToListAsync(ct);
                return TypedResults.Ok(invoices.Select(InvoiceSummary.Of).ToList());
            })
            .WithName("ListInvoices").WithSummary("Your issued invoices, oldest first.");

        group.MapGet("/draft", async Task<Results<Ok<InvoiceDraft>, ProblemHttpResult>> (string? month, HttpContext http, IQuerySession session, TimeProvider clock, InvoicingSettings settings, CancellationToken ct) =>
            {
                var now = clock.GetUtcNow();
                var period = BillingMonth.Of(now);
                if (month is not null && !BillingMonth.TryParse(month, out period))
                    return BillingMonth.Problem("month", month);
                return TypedResults.Ok(await DraftAsync(session, http.User.TenantId()!, period, now, settings, ct));
            })
            .WithName("GetInvoiceDraft")
            .WithSummary("The invoice of a month (default: this one) as it stands, until it is issued: month to date, then the whole month during the grace period.")
            .ProducesProblem(404).ProducesValidationProblem();

        group.MapGet("/{invoiceId}", async (string invoiceId, HttpContext http, IQuerySession session, CancellationToken ct) =>
                await session.LoadAsync<Invoice>(invoiceId, ct) is { } invoice && invoice.TenantId == http.User.TenantId()
                    ? InvoiceLines.Respond(http, invoice)
                    : throw RuleViolation.NotFound($"No invoice '{invoiceId}'."))
            .WithName("GetInvoice")
            .WithSummary("An issued invoice: its lines never change; credit notes against it are listed with it. Its lines as CSV with ?format=csv or Accept: text/csv; its document as a PDF with ?format=pdf or Accept: application/pdf.")
            .Produces<Invoice>(200, "application/json", "text/csv", InvoiceDocument.ContentType).ProducesProblem(404);
        return app;
    }

    public static async Task<InvoiceDraft> DraftAsync(IQuerySession session, string tenantId, BillingMonth month, DateTimeOffset now, InvoicingSettings settings, CancellationToken ct)
    {
        // The invoice document is written with its event, the account a moment later by the daemon: ask the invoice first.
        if (await session.LoadAsync<Invoice>(Invoice.IdFor(tenantId, month), ct) is { } issued)
            throw RuleViolation.NotFound($"The invoice for {month} is issued: GET /v1/invoices/{issued.Id}.");
        var source = await UsageTotals.DraftSourceAsync(session, tenantId, month, ct);
        // A tenant the read models have not reached yet (they follow the log by a second or so) has billed nothing: an empty
        // draft rather than a 404 for an account that exists.
        var account = source.Account
            ?? (await session.LoadAsync<Tenant>(Tenant.StreamId(tenantId), ct) is { } tenant ? BillingAccount.Open(tenant.Id, tenant.Name, tenant.Currency) : null)
            ?? throw RuleViolation.NotFound($"No tenant '{tenantId}'.");
        return InvoiceDraft.Of(account, month, now, settings.GracePeriod, UsageTotals.Merge(source.Usage, account.SpilledUsageOn(month)), source.Through);
    }
}

/// <summary>An invoice as JSON, or its lines as CSV for a spreadsheet: one row per line, amounts in the invoice's currency.</summary>
public static class InvoiceLines
{
    static readonly Column<(Invoice Invoice, InvoiceLine Line)>[] Columns =
    [
        new("invoice_number", r => r.Invoice.DocumentNumber), new("month", r => r.Invoice.Month), new("line", r => r.Line.Line.ToString(CultureInfo.InvariantCulture)),
        new("kind", r => r.Line.Kind.ToString()), new("description", r => r.Line.Description), new("model", r => r.Line.Model), new("region", r => r.Line.Region),
        new("deployment_type", r => r.Line.Type.ToString()), new("deployment_id", r => r.Line.DeploymentId ?? ""), new("reservation_id", r => r.Line.ReservationId ?? ""),
        new("from", r => r.Line.From is { } from ? Tables.Instant(from) : ""), new("to", r => r.Line.To is { } to ? Tables.Instant(to) : ""),
        new("quantity", r => Tables.Number(r.Line.Quantity)), new("unit", r => r.Line.Unit), new("unit_price", r => Tables.Number(r.Line.UnitPrice)),
        new("currency", r => r.Invoice.Currency), new("amount", r => Money.Text(r.Line.Amount, r.Invoice.Currency)),
    ];

    /// <summary>The invoice as JSON, its lines as CSV, or its document as a PDF, as the caller asks.</summary>
    public static IResult Respond(HttpContext http, Invoice invoice)
    {
        if (InvoiceDocument.Wanted(http))
            return TypedResults.File(InvoiceDocument.Render(invoice), InvoiceDocument.ContentType, invoice.DocumentNumber + ".pdf");
        return Tables.WantsCsv(http)
            ? Tables.Respond(http, invoice.Lines.Select(l => (invoice, l)).ToList(), invoice.DocumentNumber, Columns)
            : TypedResults.Ok(invoice);
    }
}

/// <summary>
/// <c>Invoicing:GracePeriod</c> (default 2 days) for late metering after a month ends; how often the issuer looks for due
/// invoices; how many accounts a month-end close issues per transaction (<c>Invoicing:CloseBatch</c>, default 500).
/// </summary>
public sealed record InvoicingSettings(TimeSpan GracePeriod, TimeSpan IssueEvery, TimeSpan CatchUpTimeout, bool AutoIssue, int CloseBatch = 500)
{
    public static InvoicingSettings FromConfiguration(IConfiguration configuration) => new(
        Span(configuration["Invoicing:GracePeriod"], TimeSpan.FromDays(2)),
        Span(configuration["Invoicing:IssueEvery"], TimeSpan.FromMinutes(1)),
        Span(configuration["Invoicing:CatchUpTimeout"], TimeSpan.FromSeconds(30)),
        !string.Equals(configuration["Invoicing:AutoIssue"], "false", StringComparison.OrdinalIgnoreCase),
        int.TryParse(configuration["Invoicing:CloseBatch"], CultureInfo.InvariantCulture, out var batch) && batch > 0 ? batch : 500);

    static TimeSpan Span(string? text, TimeSpan fallback) =>
        text is { Length: > 0 } ? TimeSpan.Parse(text, CultureInfo.InvariantCulture) : fallback;
}
