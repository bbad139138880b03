using Throughput.Catalog;

namespace Throughput.Invoicing;

public enum InvoiceLineKind
{
    /// <summary>PTU-hours deployed and not covered by a reservation, at the deployment's hourly price.</summary>
    Provisioned,

    /// <summary>A reservation's charge (a month term once, a year term in twelve monthly installments), used or not.</summary>
    Reservation,

    /// <summary>Tokens served by spillover in the invoice's own month, per token type.</summary>
    Spillover,

    /// <summary>Spillover tokens of an earlier, already issued month that were metered after it was issued.</summary>
    PriorPeriodAdjustment,

    /// <summary>Adapter-hours hosted on an adapter deployment or set, at the model's price per adapter-hour.</summary>
    AdapterHosting,

    /// <summary>
    /// Spillover of a capped month above its hard cap (a SpilloverSpend alert with capsSpillover), not billed: a negative
    /// amount that brings the month's spillover of the deployment (or its share of a tenant-wide cap) down to the cap.
    /// </summary>
    SpilloverAboveCap,
}

public enum TokenType
{
    /// <summary>Prompt tokens minus cached prompt tokens.</summary>
    Input,
    Cached,
    Output,
}

/// <summary>
/// One line of an invoice. <see cref="Amount"/> is rounded half away from zero to the currency's minor unit; the
/// invoice total is the sum of the rounded amounts. <see cref="Quantity"/> is for reading (PTU-hours to 6 decimals,
/// tokens in millions); amounts are computed from exact seconds and token counts.
/// </summary>
/// <param name="Line">The line's number on the invoice, from 1.</param>
/// <param name="Kind">Provisioned, Reservation, Spillover, PriorPeriodAdjustment, AdapterHosting or SpilloverAboveCap (negative).</param>
/// <param name="Description">What is billed, in words.</param>
/// <param name="Model">The catalog model.</param>
/// <param name="Region">The region.</param>
/// <param name="Type">The deployment type.</param>
/// <param name="DeploymentId">The deployment billed; null for a reservation.</param>
/// <param name="ReservationId">The reservation billed; null otherwise.</param>
/// <param name="From">Start of the time billed (provisioned, hosting, reservation lines); null for tokens.</param>
/// <param name="To">End of the time billed; null for tokens.</param>
/// <param name="Quantity">How many units: PTU-hours, adapter-hours, installments or millions of tokens.</param>
/// <param name="Unit">The unit: PTU-hour, adapter-hour, PTU-month, installment, 1M tokens or cap (a SpilloverAboveCap line, quantity 1).</param>
/// <param name="UnitPrice">The price per unit, in the invoice's currency.</param>
/// <param name="Amount">Quantity × unit price, rounded half away from zero to the currency's minor unit.</param>
/// <param name="Ptu">The PTUs deployed (or reserved) during the line.</param>
/// <param name="CoveredPtu">Of those, the PTUs a reservation covered (not billed hourly).</param>
/// <param name="CoveredPtuHours">The covered PTUs × hours.</param>
/// <param name="TokenType">For token lines: Input (prompt less cached), Cached or Output.</param>
/// <param name="Tokens">For token lines: the spilled tokens billed.</param>
/// <param name="ServiceMonth">For token and SpilloverAboveCap lines: the month (yyyy-MM) the tokens were served in; earlier than the invoice's for a prior-period adjustment.</param>
public sealed record InvoiceLine(
    int Line,
    InvoiceLineKind Kind,
    string Description,
    string Model,
    string Region,
    DeploymentType Type,
    string? DeploymentId,
    string? ReservationId,
    DateTimeOffset? From,
    DateTimeOffset? To,
    decimal Quantity,
    string Unit,
    decimal UnitPrice,
    decimal Amount,
    decimal? Ptu = null,
    decimal? CoveredPtu = null,
    decimal? CoveredPtuHours = null,
    TokenType? TokenType = null,
    long? Tokens = null,
    string? ServiceMonth = null);

/// <summary>The gapless counters of invoice and credit note numbers: one stream, locked while a number is taken.</summary>
public sealed record InvoiceRegisterOpened(DateTimeOffset At);

public sealed record InvoiceNumberAssigned(long Number, string InvoiceId, string TenantId, string Month, DateTimeOffset At);

public sealed record CreditNoteNumberAssigned(long Number, string CreditNoteId, string InvoiceId, DateTimeOffset At);

/// <summary>An issued invoice, whole: what it bills lives in the event, so a rebuild reproduces it exactly.</summary>
public sealed record InvoiceIssued(
    string InvoiceId,
    long Number,
    string DocumentNumber,
    string TenantId,
    string Month,
    string Currency,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    IReadOnlyList<InvoiceLine> Lines,
    decimal Total,
    DateTimeOffset IssuedAt,
    string IssuedBy,
    string? BillTo = null);

/// <summary>A credited amount; against one invoice line, or (line null) against the invoice as a whole.</summary>
/// <param name="InvoiceLine">The invoice line it credits, from 1; null for a credit against the whole invoice.</param>
/// <param name="Description">What is credited, in words.</param>
/// <param name="Model">The credited line's model; empty for a credit against the whole invoice.</param>
/// <param name="Region">The credited line's region; empty for a credit against the whole invoice.</param>
/// <param name="Type">The credited line's deployment type; null for a credit against the whole invoice.</param>
/// <param name="Amount">The amount credited, in the invoice's currency.</param>
public sealed record CreditNoteLine(int? InvoiceLine, string Description, string Model, string Region, DeploymentType? Type, decimal Amount);

/// <summary>A correction of an issued invoice: a document of its own, numbered, never changing the invoice it corrects.</summary>
public sealed record CreditNoteIssued(
    string CreditNoteId,
    long Number,
    string DocumentNumber,
    string InvoiceId,
    string InvoiceNumber,
    string TenantId,
    string InvoiceMonth,
    string Currency,
    IReadOnlyList<CreditNoteLine> Lines,
    decimal Total,
    string Reason,
    string? IdempotencyKey,
    DateTimeOffset IssuedAt,
    string IssuedBy);

public sealed record InvoiceRegister(string Id, long LastInvoiceNumber, long LastCreditNoteNumber, long Version)
{
    public const string StreamId = "invoice-register";

    public static InvoiceRegister Create(InvoiceRegisterOpened e) => new(StreamId, 0, 0, 0);

    public InvoiceRegister Apply(InvoiceNumberAssigned e) => this with { LastInvoiceNumber = e.Number };

    public InvoiceRegister Apply(CreditNoteNumberAssigned e) => this with { LastCreditNoteNumber = e.Number };

    public static string InvoiceDocumentNumber(long number) => $"INV-{number:D8}";

    public static string CreditNoteDocumentNumber(long number) => $"CN-{number:D8}";
}

/// <summary>A credit note as the invoice it corrects lists it.</summary>
/// <param name="CreditNoteId">The credit note's id.</param>
/// <param name="Number">Its number in the register.</param>
/// <param name="DocumentNumber">The number printed on it.</param>
/// <param name="Total">The amount it credited.</param>
/// <param name="Lines">What it credited, line by line.</param>
/// <param name="Reason">Why it was issued.</param>
/// <param name="IdempotencyKey">The Idempotency-Key it was issued with, if any: a repeat with the same key returns it.</param>
/// <param name="IssuedAt">When it was issued.</param>
/// <param name="IssuedBy">The key id of whoever issued it.</param>
public sealed record CreditNoteReference(
    string CreditNoteId, long Number, string DocumentNumber, decimal Total, IReadOnlyList<CreditNoteLine> Lines, string Reason, string? IdempotencyKey, DateTimeOffset IssuedAt, string IssuedBy);

/// <summary>An issued invoice: its content never changes; credit notes against it are listed beside it.</summary>
/// <param name="Id">The invoice's id, inv-{tenantId}-{yyyyMM}.</param>
/// <param name="Number">Its number in the register: consecutive, no gaps.</param>
/// <param name="DocumentNumber">The number printed on it.</param>
/// <param name="TenantId">The tenant billed.</param>
/// <param name="Month">The billing month, yyyy-MM (UTC).</param>
/// <param name="Period">Month as a sortable number: year × 12 + month − 1.</param>
/// <param name="Currency">The ISO 4217 currency of every amount on it.</param>
/// <param name="PeriodStart">The month's first instant (UTC).</param>
/// <param name="PeriodEnd">The next month's first instant (UTC): the period is [start, end).</param>
/// <param name="Lines">What it bills, line by line; never changes.</param>
/// <param name="Total">The sum of its lines.</param>
/// <param name="IssuedAt">When it was issued.</param>
/// <param name="IssuedBy">The key id of whoever issued it, or automatic.</param>
/// <param name="CreditNotes">The credit notes issued against it.</param>
/// <param name="Credited">What its credit notes took back, in total.</param>
/// <param name="Version">Its stream version.</param>
/// <param name="BillTo">The tenant's name when it was issued; null for invoices issued before names were kept.</param>
public sealed record Invoice(
    string Id,
    long Number,
    string DocumentNumber,
    string TenantId,
    string Month,
    int Period,
    string Currency,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    IReadOnlyList<InvoiceLine> Lines,
    decimal Total,
    DateTimeOffset IssuedAt,
    string IssuedBy,
    IReadOnlyList<CreditNoteReference> CreditNotes,
    decimal Credited,
    long Version,
    string? BillTo = null)
{
    /// <summary>One invoice per tenant and month: the id is the stream id, so a second issue can never start another stream.</summary>
    public static string IdFor(string tenantId, BillingMonth month) => $"inv-{tenantId}-{month.Year:D4}{month.Month:D2}";

    /// <summary>Total less what was credited.</summary>
    public decimal Balance => Total - Credited;

    public static Invoice Create(InvoiceIssued e) => new(
        e.InvoiceId, e.Number, e.DocumentNumber, e.TenantId, e.Month, BillingMonth.Parse(e.Month).Index, e.Currency, e.PeriodStart, e.PeriodEnd,
        e.Lines, e.Total, e.IssuedAt, e.IssuedBy, [], 0m, 0, e.BillTo);

    public Invoice Apply(CreditNoteIssued e) => this with
    {
        CreditNotes = [.. CreditNotes, new CreditNoteReference(e.CreditNoteId, e.Number, e.DocumentNumber, e.Total, e.Lines, e.Reason, e.IdempotencyKey, e.IssuedAt, e.IssuedBy)],
        Credited = Credited + e.Total,
    };

    public decimal CreditedOnLine(int line) => CreditNotes.SelectMany(c => c.Lines).Where(l => l.InvoiceLine == line).Sum(l => l.Amount);
}
