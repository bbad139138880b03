using System.Collections.Immutable;
using System.Globalization;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Invoicing;
using Throughput.Tenants;

namespace Throughput.Tests.Domain;

/// <summary>
/// Usage by invoice (<see cref="UsageTotals"/>) against the billing account it replaced for usage: the same invoice month
/// for every record, and an invoice's usage list with every token and the spill the account carries.
/// </summary>
public sealed class UsageTotalsSpecs
{
    static readonly BillingMonth October = new(2026, 10);
    static readonly BillingMonth November = new(2026, 11);
    static readonly BillingMonth December = new(2026, 12);

    static DateTimeOffset At(string utc) => DateTimeOffset.ParseExact(utc, "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);

    static readonly object[] Opened =
    [
        new TenantCreated("acme", "Acme", "USD", At("2026-01-01 00:00:00")),
        new DeploymentCreated("dep-1", "acme", "docs", "gpt-4o", "eastus", DeploymentType.Global, 1m, 2500, 4, 1, 60, true, "USD",
            new PriceList(2.35m, 260m, 2652m, 2.5m, 1.25m, 10m), At("2026-10-01 00:00:00")),
    ];

    static UsageMetered Used(long records, long spilledOutput, string finishedAt) =>
        new("dep-1", "acme", [new ProducerRange("node-1", 1, 1)], new TokenCounts(records, 10 * records, 0, 100 * records, spilledOutput > 0 ? 1 : 0, 0, 0, spilledOutput),
            records, At(finishedAt).AddSeconds(-2), At(finishedAt), 0, 0, 2500, At(finishedAt));

    static InvoiceIssued Issued(object[] log, BillingMonth month, string at) =>
        Issue.Decide(new InvoiceRegister(InvoiceRegister.StreamId, 0, 0, 1), null, Account(log), "acme", month, At(at), Issue.Automatic)!.Issued;

    static BillingAccount Account(IEnumerable<object> log) => BillingAccount.FoldAll(null, "acme", log)!;

    static UsageTotals.Page Fold(IEnumerable<object> page, params BillingMonth[] issuedBefore) =>
        UsageTotals.Fold(page, u => u.TenantId, issuedBefore.Length == 0
            ? ImmutableDictionary<string, ImmutableHashSet<BillingMonth>>.Empty
            : new Dictionary<string, ImmutableHashSet<BillingMonth>> { ["acme"] = [.. issuedBefore] });

    static long Records(UsageTotals.Page page, BillingMonth invoice, BillingMonth service) =>
        page.Totals.GetValueOrDefault(new UsageTotals.Key("acme", invoice, service, "dep-1")).Records;

    [Fact]
    public void Usage_of_an_issued_month_lands_on_the_first_open_invoice_and_an_invoice_issued_within_the_page_moves_what_follows_it()
    {
        var november = Issued(Opened, November, "2026-12-02 00:00:00");
        var page = Fold(
            [Used(100, 0, "2026-10-31 23:00:00"), Used(5, 0, "2026-11-10 00:00:00"), november, Used(7, 0, "2026-11-30 23:00:00"), Used(3, 0, "2026-12-01 00:00:00")],
            October);

        Assert.Equal(100, Records(page, November, October));
        Assert.Equal(5, Records(page, November, November));
        Assert.Equal(7, Records(page, December, November));
        Assert.Equal(3, Records(page, December, December));
        Assert.Equal(4, page.Totals.Count);
        Assert.Equal([("acme", November)], page.Issued);
    }

    [Fact]
    public void Every_record_lands_on_the_invoice_month_the_account_gives_its_spilled_part()
    {
        object[] october = [.. Opened, Used(1, 10, "2026-10-05 00:00:00")];
        object[] log = [.. october, Issued(october, October, "2026-11-02 00:00:00"), Used(2, 20, "2026-10-30 00:00:00"), Used(4, 40, "2026-11-03 00:00:00")];
        var page = Fold(log);
        var account = Account(log);

        // The open month as the account has it; the issued one keeps what was metered onto it before it was issued.
        Assert.Equal(
            account.SpilledUsageOn(November).Values.Sum(u => u.Tokens.SpilledOutputTokens),
            page.Totals.Where(t => t.Key.Invoice == November).Sum(t => t.Value.SpilledOutputTokens));
        Assert.Equal(60, account.SpilledUsageOn(November).Values.Sum(u => u.Tokens.SpilledOutputTokens));
        Assert.Equal(10, page.Totals.Where(t => t.Key.Invoice == October).Sum(t => t.Value.SpilledOutputTokens));
    }

    [Fact]
    public void An_invoices_usage_has_every_token_and_the_spill_an_earlier_invoice_did_not_bill()
    {
        // November's draft is read, then a spilled November record reaches the projection, then November is issued: the
        // invoice did not bill it, so the account carries its spill to December, where the totals never counted it.
        var november = Issued(Opened, November, "2026-12-03 00:00:00");
        object[] log = [.. Opened, Used(3, 30_000, "2026-11-29 00:00:00"), november, Used(9, 0, "2026-12-04 00:00:00")];

        var page = Fold(log);
        var account = Account(log);
        var december = UsageTotals.Merge(
            page.Totals.Where(t => t.Key.Invoice == December).Select(t => new UsageEntry(t.Key.Service.ToString(), t.Key.Deployment, t.Value)),
            account.SpilledUsageOn(December));

        Assert.Equal(
            [("2026-11", new TokenCounts(0, 0, 0, 0, 0, 0, 0, 30_000)), ("2026-12", new TokenCounts(9, 90, 0, 900, 0, 0, 0, 0))],
            december.Select(u => (u.ServiceMonth, u.Tokens)));
    }

    [Fact]
    public void Merged_entries_keep_the_totals_counts_and_take_the_spill_from_the_account()
    {
        var totals = new UsageEntry("2026-12", "dep-1", new TokenCounts(10, 100, 5, 1_000, 1, 0, 0, 50));
        var spilled = new UsageEntry("2026-12", "dep-1", new TokenCounts(0, 0, 0, 0, 1, 20, 0, 80));

        var merged = Assert.Single(UsageTotals.Merge([totals], new Dictionary<string, UsageEntry> { ["2026-12|dep-1"] = spilled }));

        Assert.Equal(new TokenCounts(10, 100, 5, 1_000, 1, 20, 0, 80), merged.Tokens);
    }
}
