using FluentValidation;
using Marten;
using Marten.Events.Projections;
using Throughput.Access;
using Throughput.Http;

namespace Throughput.Invoicing;

/// <summary>Credit an amount against the invoice as a whole, or amounts against some of its lines (not both).</summary>
/// <param name="Amount">An amount against the whole invoice, in its currency and to its minor unit, at most its balance.</param>
/// <param name="Lines">Amounts against some of its lines, each at most what is left to credit on the line.</param>
/// <param name="Reason">Why, as the credit note states it: up to 500 characters.</param>
public sealed record IssueCreditNote(decimal? Amount, IReadOnlyList<CreditLineRequest>? Lines, string Reason);

/// <summary>An amount to credit on one invoice line.</summary>
/// <param name="Line">The invoice line's number, from 1.</param>
/// <param name="Amount">More than 0, in the invoice's currency and to its minor unit.</param>
public sealed record CreditLineRequest(int Line, decimal Amount);

/// <summary>A credit note as finance reads it: a numbered document of its own.</summary>
/// <param name="Id">The credit note's id.</param>
/// <param name="Number">Its number in the register, shared with invoices: no gaps.</param>
/// <param name="DocumentNumber">The number printed on the document.</param>
/// <param name="InvoiceId">The issued invoice it corrects.</param>
/// <param name="InvoiceNumber">The document number of that invoice.</param>
/// <param name="TenantId">The tenant billed.</param>
/// <param name="InvoiceMonth">The billing month (yyyy-MM) of the invoice it corrects.</param>
/// <param name="Month">The month (yyyy-MM, UTC) it was issued in, where finance counts it.</param>
/// <param name="Period">Month as a sortable number: year × 12 + month − 1.</param>
/// <param name="Currency">The invoice's currency.</param>
/// <param name="Lines">What it credits, line by line.</param>
/// <param name="Total">The amount credited: the sum of its lines.</param>
/// <param name="Reason">Why it was issued, as finance wrote it.</param>
/// <param name="IssuedAt">When it was issued.</param>
/// <param name="IssuedBy">The key id of whoever issued it.</param>
public sealed record CreditNote(
    string Id,
    long Number,
    string DocumentNumber,
    string InvoiceId,
    string InvoiceNumber,
    string TenantId,
    string InvoiceMonth,
    string Month,
    int Period,
    string Currency,
    IReadOnlyList<CreditNoteLine> Lines,
    decimal Total,
    string Reason,
    DateTimeOffset IssuedAt,
    string IssuedBy)
{
    public static CreditNote Of(Invoice invoice, CreditNoteReference c) => Of(new CreditNoteIssued(c.CreditNoteId, c.Number, c.DocumentNumber, invoice.Id,
        invoice.DocumentNumber, invoice.TenantId, invoice.Month, invoice.Currency, c.Lines, c.Total, c.Reason, c.IdempotencyKey, c.IssuedAt, c.IssuedBy));

    public static CreditNote Of(CreditNoteIssued e)
    {
        var month = BillingMonth.Of(e.IssuedAt);
        return new(e.CreditNoteId, e.Number, e.DocumentNumber, e.InvoiceId, e.InvoiceNumber, e.TenantId, e.InvoiceMonth, month.ToString(), month.Index,
            e.Currency, e.Lines, e.Total, e.Reason, e.IssuedAt, e.IssuedBy);
    }
}

/// <summary>A credit note decided: the register's event that numbers it and the invoice stream's event that records it.</summary>
public sealed record IssuedCreditNote(CreditNoteNumberAssigned Numbered, CreditNoteIssued Issued);

/// <summary>Credit notes as documents, by their id; async like every multi-stream projection.</summary>
public sealed class CreditNoteProjection : MultiStreamProjection<CreditNote, string>
{
    public CreditNoteProjection()
    {
        Name = "CreditNote";
        Identity<CreditNoteIssued>(e => e.CreditNoteId);
    }

    public static CreditNote Create(CreditNoteIssued e) => CreditNote.Of(e);
}

public static class CreditNotes
{
    public sealed class Validator : AbstractValidator<IssueCreditNote>
    {
        public Validator()
        {
            RuleFor(x => x.Reason).Text(500, lines: true);
            RuleFor(x => x).Must(x => x.Amount is null != (x.Lines is null)).OverridePropertyName("amount").WithMessage("Send either amount or lines, not both.");
            RuleFor(x => x.Amount).GreaterThan(0).LessThanOrEqualTo(1_000_000_000).When(x => x.Amount is not null);
            RuleFor(x => x.Lines).NotEmpty().Must(l => l!.Select(x => x.Line).Distinct().Count() == l!.Count).WithMessage("Name each invoice line once.")
                .When(x => x.Lines is not null);
            RuleForEach(x => x.Lines).ChildRules(line =>
            {
                line.RuleFor(l => l.Line).GreaterThan(0);
                line.RuleFor(l => l.Amount).GreaterThan(0).LessThanOrEqualTo(1_000_000_000);
            });
        }
    }

    /// <summary>The register's event and the invoice stream's, committed together; null if this idempotency key already credited the invoice.</summary>
    public static IssuedCreditNote? Decide(InvoiceRegister register, Invoice invoice, IssueCreditNote command, string? idempotencyKey, DateTimeOffset now, string issuedBy)
    {
        if (idempotencyKey is not null && invoice.CreditNotes.Any(c => c.IdempotencyKey == idempotencyKey)) return null;
        List<CreditNoteLine> lines = [];
        if (command.Amount is { } amount)
        {
            lines.Add(new CreditNoteLine(null, $"Credit against {invoice.DocumentNumber}", "", "", null, amount));
        }
        else
        {
            foreach (var request in command.Lines!)
            {
                var line = invoice.Lines.FirstOrDefault(l => l.Line == request.Line)
                    ?? throw RuleViolation.Unprocessable($"{invoice.DocumentNumber} has no line {request.Line}.");
                var creditable = line.Amount - invoice.CreditedOnLine(line.Line);
                if (request.Amount > creditable)
                    throw RuleViolation.Conflict($"Line {line.Line} of {invoice.DocumentNumber} has {creditable} {invoice.Currency} left to credit; {request.Amount} requested.");
                lines.Add(new CreditNoteLine(line.Line, $"Credit on line {line.Line}: {line.Description}", line.Model, line.Region, line.Type, request.Amount));
            }
        }
        foreach (var l in lines)
        {
            if (Money.Round(l.Amount, invoice.Currency) != l.Amount)
                throw RuleViolation.Unprocessable($"{l.Amount} has more decimals than {invoice.Currency} has minor units ({Money.MinorUnitsOf(invoice.Currency)}).");
        }
        lines = [.. lines.Select(l => l with { Amount = Money.Round(l.Amount, invoice.Currency) })];
        var total = lines.Sum(l => l.Amount);
        if (total > invoice.Balance)
            throw RuleViolation.Conflict($"{invoice.DocumentNumber} has a balance of {invoice.Balance} {invoice.Currency}; a credit of {total} would exceed it.");

        var number = register.LastCreditNoteNumber + 1;
        var id = $"cn-{number:D8}";
        return new IssuedCreditNote(
            new CreditNoteNumberAssigned(number, id, invoice.Id, now),
            new CreditNoteIssued(id, number, InvoiceRegister.CreditNoteDocumentNumber(number), invoice.Id, invoice.DocumentNumber, invoice.TenantId,
                invoice.Month, invoice.Currency, lines, total, command.Reason, idempotencyKey, now, issuedBy));
    }

    public static IEndpointRouteBuilder MapCreditNotes(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/finance/invoices/{invoiceId}/credit-notes", async Task<Results<Created<CreditNote>, Ok<CreditNote>, ProblemHttpResult>> (string invoiceId, IssueCreditNote command, HttpContext http, IDocumentStore store, TimeProvider clock, CancellationToken ct) =>
            {
                var (key, badKey) = IdempotencyKeys.Of(http);
                if (badKey is not null) return badKey;
                var now = clock.GetUtcNow();
                await InvoiceRegisters.EnsureOpenAsync(store, now, ct);
                await using var session = store.LightweightSession();
                // The register's row lock serialises credit notes with invoices: gapless numbers, and no two credits overspend a balance.
                var register = await session.Events.FetchForExclusiveWriting<InvoiceRegister>(InvoiceRegister.StreamId, ct);
                var stream = await session.Events.FetchForWriting<Invoice>(invoiceId, ct);
                var invoice = stream.Aggregate ?? throw RuleViolation.NotFound($"No issued invoice '{invoiceId}'.");
                if (Decide(register.Aggregate!, invoice, command, key, now, "finance:" + http.User.KeyId()) is not var (numbered, issued))
                {
                    var earlier = invoice.CreditNotes.First(c => c.IdempotencyKey == key);
                    return TypedResults.Ok(CreditNote.Of(invoice, earlier));
                }
                register.AppendOne(numbered);
                stream.AppendOne(issued);
                await session.SaveChangesAsync(ct);
                return TypedResults.Created($"/v1/finance/credit-notes/{issued.CreditNoteId}", CreditNote.Of(issued));
            })
            .ValidateWith(new Validator())
            .RequireAuthorization(Policies.Finance).WithTags("Finance")
            .WithName("IssueCreditNote").WithHeader(ContractHeader.IdempotencyKey)
            .WithSummary("Credit an issued invoice, with a reason. Send Idempotency-Key so that a retry never credits twice.")
            .ProducesProblem(404).ProducesProblem(409).ProducesProblem(422);

        app.MapGet("/v1/finance/credit-notes/{creditNoteId}", async (string creditNoteId, IQuerySession session, CancellationToken ct) =>
                await session.LoadAsync<CreditNote>(creditNoteId, ct) is { } note ? TypedResults.Ok(note) : throw RuleViolation.NotFound($"No credit note '{creditNoteId}'."))
            .RequireAuthorization(Policies.Finance).WithTags("Finance").WithName("GetCreditNote")
            .ProducesProblem(404);
        return app;
    }
}
