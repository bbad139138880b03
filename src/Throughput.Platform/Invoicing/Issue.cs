using Marten;
using Throughput.Access;
using Throughput.Http;

namespace Throughput.Invoicing;

/// <summary>An invoice decided: the register's event that numbers it and the event that starts its stream.</summary>
public sealed record IssuedInvoice(InvoiceNumberAssigned Numbered, InvoiceIssued Issued);

/// <summary>Issuing a month's invoice: numbered without gaps, the content fixed in the event, once per tenant and month.</summary>
public static class Issue
{
    public const string Automatic = "automatic";

    /// <summary>The register's event and the new invoice stream's, committed together; null if it was issued already.</summary>
    public static IssuedInvoice? Decide(InvoiceRegister register, Invoice? existing, BillingAccount? account, string tenantId, BillingMonth month, DateTimeOffset now, string issuedBy)
    {
        if (existing is not null) return null;
        EnsureOver(month, now);
        if (account is null) throw RuleViolation.NotFound($"No billing account for tenant '{tenantId}'.");
        return Bill(account, month, register.LastInvoiceNumber + 1, now, issuedBy)
            ?? throw RuleViolation.Conflict($"Tenant '{tenantId}' has nothing to invoice for {month}.");
    }

    /// <summary>
    /// A month's invoices for many accounts at once, numbered on from the register without gaps, in the order given.
    /// Accounts with nothing to bill get none; the caller leaves out those already issued.
    /// </summary>
    public static IReadOnlyList<IssuedInvoice> DecideMany(InvoiceRegister register, IEnumerable<BillingAccount> accounts, BillingMonth month, DateTimeOffset now, string issuedBy)
    {
        EnsureOver(month, now);
        List<IssuedInvoice> issued = [];
        foreach (var account in accounts)
            if (Bill(account, month, register.LastInvoiceNumber + issued.Count + 1, now, issuedBy) is { } invoice) issued.Add(invoice);
        return issued;
    }

    static void EnsureOver(BillingMonth month, DateTimeOffset now)
    {
        if (now < month.End)
            throw RuleViolation.Conflict($"{month} is not over; its invoice can be issued from {month.End:yyyy-MM-dd HH:mm:ss} UTC.");
    }

    static IssuedInvoice? Bill(BillingAccount account, BillingMonth month, long number, DateTimeOffset now, string issuedBy)
    {
        var figures = InvoiceCalculation.Compute(account, month, month.End);
        if (figures.Lines.Count == 0) return null;
        var invoiceId = Invoice.IdFor(account.Id, month);
        return new IssuedInvoice(
            new InvoiceNumberAssigned(number, invoiceId, account.Id, month.ToString(), now),
            new InvoiceIssued(invoiceId, number, InvoiceRegister.InvoiceDocumentNumber(number), account.Id, month.ToString(), account.Currency,
                month.Start, month.End, figures.Lines, figures.Total, now, issuedBy, account.Name));
    }

    public static IEndpointRouteBuilder MapIssue(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/finance/invoices/{tenantId}/{month}/issue", async Task<Results<Created<Invoice>, Ok<Invoice>, ProblemHttpResult>> (string tenantId, string month, HttpContext http, InvoiceIssuing issuing, TimeProvider clock, CancellationToken ct) =>
            {
                if (!BillingMonth.TryParse(month, out var period))
                    return BillingMonth.Problem("month", month);
                var (invoice, created) = await issuing.IssueAsync(tenantId, period, clock.GetUtcNow(), "finance:" + http.User.KeyId(), ct);
                return created ? TypedResults.Created($"/v1/finance/invoices/{invoice.Id}", invoice) : TypedResults.Ok(invoice);
            })
            .RequireAuthorization(Policies.Finance).WithTags("Finance")
            .WithName("IssueInvoice")
            .WithSummary("Issue a tenant's invoice for a month that is over, before the grace period ends. Issuing again returns the same invoice.")
            .ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(422);

        app.MapPost("/v1/finance/closes/{month}", Results<Accepted, ProblemHttpResult> (string month, HttpContext http, MonthEndClose close, TimeProvider clock) =>
            {
                if (!BillingMonth.TryParse(month, out var period))
                    return BillingMonth.Problem("month", month);
                if (clock.GetUtcNow() < period.End)
                    throw RuleViolation.Conflict($"{period} is not over; it can be closed from {period.End:yyyy-MM-dd HH:mm:ss} UTC.");
                close.Start(period, "finance:" + http.User.KeyId());
                return TypedResults.Accepted($"/v1/finance/closes/{period}");
            })
            .RequireAuthorization(Policies.Finance).WithTags("Finance")
            .WithName("CloseMonth")
            .WithSummary("Issue every tenant's invoice for a month that is over, in the background; follow it at the Location. Starting it again finishes what a stopped run left.")
            .ProducesProblem(400).ProducesProblem(409).ProducesProblem(422);

        app.MapGet("/v1/finance/closes/{month}", async Task<Results<Ok<MonthClose>, ProblemHttpResult>> (string month, IQuerySession session, CancellationToken ct) =>
            {
                if (!BillingMonth.TryParse(month, out var period))
                    return BillingMonth.Problem("month", month);
                return await session.LoadAsync<MonthClose>(period.ToString(), ct) is { } progress
                    ? TypedResults.Ok(progress)
                    : TypedResults.Problem(statusCode: 404, title: "Not found", detail: $"{period} has not been closed.");
            })
            .RequireAuthorization(Policies.Finance).WithTags("Finance")
            .WithName("GetMonthClose")
            .WithSummary("A month's close: accounts found open, issued and skipped so far, rate and estimated end.")
            .ProducesProblem(400).ProducesProblem(404).ProducesProblem(422);
        return app;
    }
}

/// <summary>
/// Takes an invoice number and appends the issued invoice in one transaction. The row lock on the register stream
/// (<c>FetchForExclusiveWriting</c>) serialises every issue and credit note, so numbers have no gaps and a retry or a
/// concurrent second request finds the invoice the first one issued.
/// </summary>
public sealed class InvoiceIssuing(IDocumentStore store, InvoicingSettings settings, ILogger<InvoiceIssuing> log)
{
    public async Task<(Invoice Invoice, bool Created)> IssueAsync(string tenantId, BillingMonth month, DateTimeOffset now, string issuedBy, CancellationToken ct)
    {
        await using (var query = store.QuerySession())
        {
            if (await query.LoadAsync<Invoice>(Invoice.IdFor(tenantId, month), ct) is { } issued) return (issued, false);
        }
        // Drafts are async: wait until they hold every event committed before now, so the invoice bills what happened.
        if (!await Drafts.WaitUntilCurrentAsync(store, settings.CatchUpTimeout, ct))
            log.LogWarning("Invoice drafts lag behind the event log; issuing {Tenant} {Month} from the draft as it is (late usage moves to the next invoice)", tenantId, month);

        await InvoiceRegisters.EnsureOpenAsync(store, now, ct);
        await using var session = store.LightweightSession();
        var register = await session.Events.FetchForExclusiveWriting<InvoiceRegister>(InvoiceRegister.StreamId, ct);
        var invoiceId = Invoice.IdFor(tenantId, month);
        var existing = await session.LoadAsync<Invoice>(invoiceId, ct);
        var account = await session.LoadAsync<BillingAccount>(tenantId, ct);
        if (Issue.Decide(register.Aggregate!, existing, account, tenantId, month, now, issuedBy) is not var (numbered, invoiceIssued)) return (existing!, false);
        register.AppendOne(numbered);
        session.Events.StartStream<Invoice>(invoiceId, invoiceIssued);
        await session.SaveChangesAsync(ct);
        log.LogInformation("Issued {Number} to {Tenant} for {Month}: {Total} {Currency}", invoiceIssued.DocumentNumber, tenantId, month, invoiceIssued.Total, invoiceIssued.Currency);
        return (Invoice.Create(invoiceIssued) with { Version = 1 }, true);
    }
}

public static class InvoiceRegisters
{
    /// <summary>The register stream must exist before its row can be locked; the first writer opens it.</summary>
    public static async Task EnsureOpenAsync(IDocumentStore store, DateTimeOffset now, CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        if (await session.LoadAsync<InvoiceRegister>(InvoiceRegister.StreamId, ct) is not null) return;
        session.Events.StartStream<InvoiceRegister>(InvoiceRegister.StreamId, new InvoiceRegisterOpened(now));
        try
        {
            await session.SaveChangesAsync(ct);
        }
        catch (Exception e) when (e is JasperFx.ConcurrencyException or Marten.Exceptions.ExistingStreamIdCollisionException)
        {
            // Opened by a concurrent writer.
        }
    }
}
