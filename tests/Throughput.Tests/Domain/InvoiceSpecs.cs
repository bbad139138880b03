using System.Globalization;
using System.Text.Json;
using Throughput.Finance;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Http;
using Throughput.Metering;
using Throughput.Invoicing;
using Throughput.Reservations;
using Throughput.Tenants;

namespace Throughput.Tests.Domain;

/// <summary>
/// Golden invoices: given the events, when the month closes, then these lines. Every amount below is worked out by
/// hand in the comment above its assertion. Prices (USD): 2.35 per PTU-hour, reservations 260 per PTU-month and
/// 2,652 per PTU-year, spillover per 1M tokens 2.50 input, 1.25 cached, 10.00 output.
/// </summary>
public sealed class InvoiceSpecs
{
    static readonly PriceList Usd = new(2.35m, 260m, 2652m, 2.5m, 1.25m, 10m);
    static readonly PriceList Eur = new(0.92m, 239.2m, 2439.84m, 2.3m, 1.15m, 9.2m);
    static readonly BillingMonth November = new(2026, 11);
    static readonly BillingMonth December = new(2026, 12);

    static DateTimeOffset At(string utc) => DateTimeOffset.ParseExact(utc, "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);

    static TenantCreated Tenant(string currency = "USD") => new("acme", "Acme", currency, At("2026-01-01 00:00:00"));

    static DeploymentCreated Created(string id, decimal ptu, string at, PriceList? prices = null, string currency = "USD", string name = "docs") =>
        new(id, "acme", name, "gpt-4o", "eastus", DeploymentType.Global, ptu, 2500, 4, 1, 60, true, currency, prices ?? Usd, At(at));

    static ReservationPurchased Reserved(string id, decimal ptu, ReservationTerm term, string starts, decimal pricePerPtu, string currency = "USD") =>
        new(id, "acme", "gpt-4o", "eastus", DeploymentType.Global, ptu, term, pricePerPtu, currency, At(starts),
            term == ReservationTerm.Month ? At(starts).AddMonths(1) : At(starts).AddYears(1));

    static UsageMetered Spilled(string deployment, long prompt, long cached, long output, string finishedAt, string? meteredAt = null) =>
        new(deployment, "acme", [new ProducerRange("node-1", 1, 1)], new TokenCounts(10, prompt, cached, output, 10, prompt, cached, output), prompt - cached + 4 * output,
            At(finishedAt).AddSeconds(-2), At(finishedAt), 0, 0, 2500, At(meteredAt ?? finishedAt));

    /// <summary>The account folded event by event; every spec also checks that the projection's page fold comes to the same account.</summary>
    static BillingAccount Given(params object[] events)
    {
        var account = events.Aggregate((BillingAccount?)null, (a, e) => BillingAccount.Fold(a, "acme", e))!;
        Assert.Equal(JsonSerializer.Serialize(account), JsonSerializer.Serialize(BillingAccount.FoldAll(null, "acme", events)));
        return account;
    }

    static InvoiceFigures Closed(BillingAccount account, BillingMonth month) => InvoiceCalculation.Compute(account, month, month.End);

    static InvoiceIssued IssueNow(BillingAccount account, BillingMonth month, DateTimeOffset now, long lastNumber = 0) =>
        Issue.Decide(new InvoiceRegister(InvoiceRegister.StreamId, lastNumber, 0, 1), null, account, "acme", month, now, Issue.Automatic)!.Issued;

    [Fact]
    public void A_resize_in_the_middle_of_an_hour_splits_the_line_at_the_second()
    {
        var account = Given(Tenant(),
            Created("dep-1", 2m, "2026-11-30 20:00:00"),
            new DeploymentResized("dep-1", 2m, 0.5m, At("2026-11-30 21:20:30")));

        var invoice = Closed(account, November);

        // 20:00:00 → 21:20:30 = 4,830 s at 2 PTU:     4,830 × 2   × 2.35 / 3600 = 6.3058… → 6.31
        // 21:20:30 → 24:00:00 = 9,570 s at 0.5 PTU:   9,570 × 0.5 × 2.35 / 3600 = 3.1235… → 3.12
        Assert.Equal([6.31m, 3.12m], invoice.Lines.Select(l => l.Amount));
        Assert.Equal([2m, 0.5m], invoice.Lines.Select(l => l.Ptu!.Value));
        Assert.Equal(At("2026-11-30 21:20:30"), invoice.Lines[0].To);
        Assert.Equal(At("2026-11-30 21:20:30"), invoice.Lines[1].From);
        Assert.Equal(2.683333m, invoice.Lines[0].Quantity); // 4,830 × 2 / 3600 PTU-hours
        Assert.Equal(9.43m, invoice.Total);
    }

    [Fact]
    public void A_reservation_covering_part_of_a_deployment_is_paid_and_only_the_rest_is_billed_hourly()
    {
        var account = Given(Tenant(),
            Created("dep-1", 3m, "2026-10-20 00:00:00"),
            Reserved("res-1", 2m, ReservationTerm.Month, "2026-11-15 12:00:00", 260m));

        var invoice = Closed(account, November);

        // Nov 1 00:00 → Nov 15 12:00 = 14.5 days = 1,252,800 s, 3 PTU uncovered: 1,252,800 × 3 × 2.35 / 3600 = 2,453.40
        // Nov 15 12:00 → Dec 1 00:00 = 15.5 days = 1,339,200 s, 2 of 3 PTU covered: 1,339,200 × 1 × 2.35 / 3600 = 874.20
        // the reservation, month term, charged in the month it starts: 2 PTU × 260 = 520.00
        Assert.Equal([InvoiceLineKind.Provisioned, InvoiceLineKind.Provisioned, InvoiceLineKind.Reservation], invoice.Lines.Select(l => l.Kind));
        Assert.Equal([2453.40m, 874.20m, 520.00m], invoice.Lines.Select(l => l.Amount));
        Assert.Equal(2m, invoice.Lines[1].CoveredPtu);
        Assert.Equal(744m, invoice.Lines[1].CoveredPtuHours); // 2 PTU × 372 h
        // reserved 2 PTU × 372 h = 744 PTU-hours, all of them used by the deployment
        Assert.Equal([new ReservationCoverage("gpt-4o", "eastus", DeploymentType.Global, 744m, 744m)], invoice.Coverage);
        Assert.Equal(3847.60m, invoice.Total);

        // December: covered until Dec 15 12:00 (1,252,800 s × 1 PTU × 2.35 / 3600 = 817.80), then 3 PTU again
        // (Dec 15 12:00 → Jan 1 = 16.5 days = 1,425,600 s × 3 × 2.35 / 3600 = 2,791.80); no second reservation charge
        Assert.Equal([817.80m, 2791.80m], Closed(account, December).Lines.Select(l => l.Amount));
    }

    [Fact]
    public void A_deployment_spanning_a_month_boundary_is_billed_in_each_month_for_its_seconds_there()
    {
        var account = Given(Tenant(),
            Created("dep-1", 0.7m, "2026-10-31 18:00:00"),
            new DeploymentReleased("dep-1", 0.7m, At("2026-11-02 06:15:45")));

        // October: 18:00 → 24:00 = 21,600 s × 0.7 × 2.35 / 3600 = 9.87
        Assert.Equal([9.87m], Closed(account, new BillingMonth(2026, 10)).Lines.Select(l => l.Amount));
        // November: Nov 1 00:00 → Nov 2 06:15:45 = 86,400 + 22,545 = 108,945 s × 0.7 × 2.35 / 3600 = 49.7818… → 49.78
        var november = Closed(account, November);
        Assert.Equal([49.78m], november.Lines.Select(l => l.Amount));
        Assert.Equal(November.Start, november.Lines[0].From);
        // December: released, nothing
        Assert.Empty(Closed(account, December).Lines);
    }

    [Fact]
    public void Spillover_is_billed_per_million_tokens_of_each_type_and_input_is_prompt_minus_cached()
    {
        var account = Given(Tenant(),
            Created("dep-1", 1m, "2026-11-01 00:00:00"),
            new DeploymentReleased("dep-1", 1m, At("2026-11-01 01:00:00")),
            Spilled("dep-1", prompt: 1_234_567, cached: 234_567, output: 345_678, finishedAt: "2026-11-01 00:30:00"));

        var invoice = Closed(account, November);

        // 1 PTU × 1 h × 2.35                                         = 2.35
        // input  = 1,234,567 − 234,567 = 1,000,000 × 2.50 / 1M       = 2.50
        // cached =   234,567 × 1.25 / 1M = 0.29320875               → 0.29
        // output =   345,678 × 10.00 / 1M = 3.45678                 → 3.46
        Assert.Equal([2.35m, 2.50m, 0.29m, 3.46m], invoice.Lines.Select(l => l.Amount));
        Assert.Equal([null, TokenType.Input, TokenType.Cached, TokenType.Output], invoice.Lines.Select(l => l.TokenType));
        Assert.Equal([1_000_000L, 234_567L, 345_678L], invoice.Lines.Skip(1).Select(l => l.Tokens!.Value));
        Assert.Equal(8.60m, invoice.Total);
    }

    [Fact]
    public void Each_line_is_rounded_half_away_from_zero_and_the_total_is_the_sum_of_rounded_lines()
    {
        var account = Given(Tenant(),
            Created("dep-1", 1m, "2026-10-01 00:00:00"),
            new DeploymentReleased("dep-1", 1m, At("2026-10-01 00:00:00")),
            Spilled("dep-1", prompt: 6_000, cached: 4_000, output: 500, finishedAt: "2026-11-05 00:00:00"));

        var invoice = Closed(account, November);

        // input 2,000 × 2.50 / 1M = 0.005 → 0.01; cached 4,000 × 1.25 / 1M = 0.005 → 0.01; output 500 × 10 / 1M = 0.005 → 0.01
        // (banker's rounding would give 0.00 each); the total is 0.03, not round(0.015) = 0.02
        Assert.Equal([0.01m, 0.01m, 0.01m], invoice.Lines.Select(l => l.Amount));
        Assert.Equal(0.03m, invoice.Total);
    }

    [Fact]
    public void A_tenant_in_euro_is_billed_in_euro_and_a_year_reservation_in_twelve_installments_that_add_up()
    {
        var account = Given(Tenant("EUR"),
            Created("dep-1", 1.3m, "2026-11-03 08:00:00", Eur, "EUR"),
            Reserved("res-1", 0.3m, ReservationTerm.Year, "2026-11-03 08:00:00", 2439.84m, "EUR"),
            new DeploymentReleased("dep-1", 1.3m, At("2026-11-13 15:05:09")));

        var november = IssueNow(account, November, At("2026-12-03 00:00:00"));

        // deployed Nov 3 08:00:00 → Nov 13 15:05:09 = 10 d 7 h 5 min 9 s = 889,509 s; 0.3 of 1.3 PTU covered:
        //   889,509 × 1.0 × 0.92 / 3600 = 227.3189… → 227.32
        // year term 0.3 × 2,439.84 = 731.952 → 731.95; installment 731.95 / 12 = 60.9958… → 61.00
        Assert.Equal("EUR", november.Currency);
        Assert.Equal([227.32m, 61.00m], november.Lines.Select(l => l.Amount));
        Assert.Equal(288.32m, november.Total);
        Assert.Contains(": 1.3 PTU, 0.3 covered by reservation, ", november.Lines[0].Description);
        // installments 2 to 11 fall in December … September; the 12th (October 2027) takes what is left: 731.95 − 11 × 61.00 = 60.95
        var october = Closed(account, new BillingMonth(2027, 10));
        Assert.Equal([60.95m], october.Lines.Select(l => l.Amount));
        var all = Enumerable.Range(November.Index, 12).Sum(m => Closed(account, BillingMonth.FromIndex(m)).Lines.Where(l => l.Kind == InvoiceLineKind.Reservation).Sum(l => l.Amount));
        Assert.Equal(731.95m, all);
    }

    [Fact]
    public void Usage_metered_after_its_month_was_issued_lands_on_the_next_invoice_as_a_prior_period_adjustment()
    {
        var account = Given(Tenant(),
            Created("dep-1", 1m, "2026-11-01 00:00:00"),
            new DeploymentReleased("dep-1", 1m, At("2026-11-01 01:00:00")),
            Spilled("dep-1", 0, 0, 100_000, "2026-11-20 10:00:00"));
        var issued = IssueNow(account, November, At("2026-12-03 00:00:00"), lastNumber: 41);
        // 1 PTU-hour × 2.35 = 2.35; output 100,000 × 10 / 1M = 1.00
        Assert.Equal(("INV-00000042", 3.35m), (issued.DocumentNumber, issued.Total));

        var after = Given(Tenant(),
            Created("dep-1", 1m, "2026-11-01 00:00:00"),
            new DeploymentReleased("dep-1", 1m, At("2026-11-01 01:00:00")),
            Spilled("dep-1", 0, 0, 100_000, "2026-11-20 10:00:00"),
            issued,
            Spilled("dep-1", prompt: 300_000, cached: 100_000, output: 50_000, finishedAt: "2026-11-30 23:59:59", meteredAt: "2026-12-03 12:00:00"));

        var december = Closed(after, December);

        // input (300,000 − 100,000) × 2.50 / 1M = 0.50; cached 100,000 × 1.25 / 1M = 0.125 → 0.13; output 50,000 × 10 / 1M = 0.50
        Assert.All(december.Lines, l => Assert.Equal((InvoiceLineKind.PriorPeriodAdjustment, "2026-11"), (l.Kind, l.ServiceMonth)));
        Assert.Equal([0.50m, 0.13m, 0.50m], december.Lines.Select(l => l.Amount));
        Assert.Equal(1.13m, december.Total);
        // November itself is closed: the account keeps only its invoice id
        Assert.Equal("inv-acme-202611", after.Issued["2026-11"]);
        Assert.Empty(after.SpilledUsageOn(November));
    }

    [Fact]
    public void Late_usage_goes_on_the_earliest_later_invoice_still_open_not_on_the_month_it_was_metered_in()
    {
        object[] november =
        [
            Tenant(),
            Created("dep-1", 1m, "2026-11-01 00:00:00"),
            new DeploymentReleased("dep-1", 1m, At("2026-11-01 01:00:00")),
            Spilled("dep-1", 0, 0, 100_000, "2026-11-20 10:00:00"),
        ];
        var issued = IssueNow(Given(november), November, At("2026-12-03 00:00:00"));
        // A November record metered on 2 January, December still a draft in its grace period: it belongs on December.
        var log = Given([.. november, issued, Spilled("dep-1", 0, 0, 50_000, finishedAt: "2026-11-29 12:00:00", meteredAt: "2027-01-02 00:00:00")]);

        // output 50,000 × 10 / 1M = 0.50
        Assert.Equal([(InvoiceLineKind.PriorPeriodAdjustment, "2026-11", 50_000L, 0.50m)],
            Closed(log, December).Lines.Select(l => (l.Kind, l.ServiceMonth, l.Tokens!.Value, l.Amount)));
        Assert.Empty(Closed(log, new BillingMonth(2027, 1)).Lines);
        Assert.Equal("0.50", System.Text.Json.JsonSerializer.Serialize(Closed(log, December).Total));
    }

    [Fact]
    public void Late_usage_for_an_issued_month_skips_to_the_first_open_one_when_several_are_open()
    {
        var october = new BillingMonth(2026, 10);
        object[] before =
        [
            Tenant(),
            Created("dep-1", 1m, "2026-10-01 00:00:00"),
            new DeploymentReleased("dep-1", 1m, At("2026-10-01 01:00:00")),
        ];
        var issued = IssueNow(Given(before), october, At("2026-11-03 00:00:00"));
        // October issued; November and December both open when an October record is metered in mid-December.
        var log = Given([.. before, issued, Spilled("dep-1", 0, 0, 30_000, finishedAt: "2026-10-31 23:00:00", meteredAt: "2026-12-15 00:00:00")]);

        Assert.Equal([(InvoiceLineKind.PriorPeriodAdjustment, "2026-10", 0.30m)], Closed(log, November).Lines.Select(l => (l.Kind, l.ServiceMonth, l.Amount)));
        Assert.Empty(Closed(log, December).Lines);
    }

    [Fact]
    public void Usage_the_draft_had_not_seen_when_it_was_issued_moves_to_the_next_invoice_instead_of_being_lost()
    {
        object[] beforeIssue =
        [
            Tenant(),
            Created("dep-1", 1m, "2026-11-01 00:00:00"),
            new DeploymentReleased("dep-1", 1m, At("2026-11-01 01:00:00")),
            Spilled("dep-1", 0, 0, 100_000, "2026-11-20 10:00:00"),
        ];
        // The issuer read the draft here; then a November batch was appended before the invoice event.
        var issued = IssueNow(Given(beforeIssue), November, At("2026-12-03 00:00:00"));
        var log = Given([.. beforeIssue, Spilled("dep-1", 0, 0, 40_000, "2026-11-29 00:00:00", "2026-12-02 23:59:59"), issued]);

        // billed 100,000 of the 140,000 November output tokens; the 40,000 left: 40,000 × 10 / 1M = 0.40, in December
        Assert.Equal([1.00m], issued.Lines.Where(l => l.Kind == InvoiceLineKind.Spillover).Select(l => l.Amount));
        var december = Closed(log, December);
        Assert.Equal([(InvoiceLineKind.PriorPeriodAdjustment, 40_000L, 0.40m)], december.Lines.Select(l => (l.Kind, l.Tokens!.Value, l.Amount)));
    }

    /// <summary>A deployment of 1 PTU bought at midnight of <paramref name="day"/> and released an hour later: 2.35 provisioned.</summary>
    static object[] AnHour(string id, string day) => [Created(id, 1m, day + " 00:00:00"), new DeploymentReleased(id, 1m, At(day + " 01:00:00"))];

    static SpilloverCapReached CapReached(string deployment, string alertId, decimal? cap, decimal spend, string at, bool tenantWide = false) =>
        new(deployment, alertId, "2026-11", spend, At(at), cap, tenantWide);

    /// <summary>The alert changed or removed (<paramref name="monthEnded"/> false), or a later month's first usage.</summary>
    static SpilloverCapLifted CapLifted(string deployment, string alertId, string at, bool monthEnded = false) => new(deployment, alertId, monthEnded, At(at));

    /// <summary>Spillover lines and spillover above a cap: (kind, deployment, amount).</summary>
    static IEnumerable<(InvoiceLineKind, string, decimal)> SpilloverOf(InvoiceFigures invoice) => invoice.Lines
        .Where(l => l.Kind is InvoiceLineKind.Spillover or InvoiceLineKind.PriorPeriodAdjustment or InvoiceLineKind.SpilloverAboveCap)
        .Select(l => (l.Kind, l.DeploymentId!, l.Amount));

    [Fact]
    public void A_deployment_cap_bills_the_months_spillover_at_exactly_the_cap_and_a_later_adjustment_nothing_above_it()
    {
        object[] november =
        [
            Tenant(),
            .. AnHour("dep-1", "2026-11-01"),
            Spilled("dep-1", 0, 0, 60_000, "2026-11-20 10:00:00"),
            // The batch that crossed the cap, and one metered in the watch's lag after it: billed whole, then clipped.
            Spilled("dep-1", 0, 0, 40_000, "2026-11-20 10:01:00"),
            CapReached("dep-1", "alr_cap", 1.00m, 1.00m, "2026-11-20 10:01:00"),
            Spilled("dep-1", 0, 0, 10_000, "2026-11-20 10:01:00"),
        ];
        var invoice = Closed(Given(november), November);

        // 110,000 output × 10 / 1M = 1.10 spilled; 1.10 − 1.00 = 0.10 above the cap, not billed
        Assert.Equal([(InvoiceLineKind.Spillover, "dep-1", 1.10m), (InvoiceLineKind.SpilloverAboveCap, "dep-1", -0.10m)], SpilloverOf(invoice));
        var clip = invoice.Lines[^1];
        Assert.Equal((2, "2026-11", "cap", -0.10m), (invoice.Lines.Count - 1, clip.ServiceMonth, clip.Unit, clip.UnitPrice));
        Assert.Contains("above the cap of 1.00 USD for 2026-11 (alert alr_cap), not billed", clip.Description);
        // 1 PTU-hour × 2.35 + 1.00 of spillover
        Assert.Equal(3.35m, invoice.Total);

        // A November record metered after November was issued: the cap is already billed in full, so December bills none of it.
        var issued = IssueNow(Given(november), November, At("2026-12-03 00:00:00"));
        var log = Given([.. november, issued, Spilled("dep-1", 0, 0, 30_000, finishedAt: "2026-11-29 12:00:00", meteredAt: "2026-12-05 00:00:00")]);
        Assert.Equal([(InvoiceLineKind.PriorPeriodAdjustment, "dep-1", 0.30m), (InvoiceLineKind.SpilloverAboveCap, "dep-1", -0.30m)], SpilloverOf(Closed(log, December)));
        Assert.StartsWith("Prior-period adjustment for 2026-11: spillover above the cap", Closed(log, December).Lines[^1].Description);
    }

    [Fact]
    public void A_tenant_wide_cap_bills_the_deployments_spillover_together_at_the_cap_shared_in_proportion()
    {
        object[] november =
        [
            Tenant(),
            .. AnHour("dep-1", "2026-11-01"),
            .. AnHour("dep-2", "2026-11-02"),
            Spilled("dep-1", 0, 0, 80_000, "2026-11-20 10:00:00"),
            Spilled("dep-2", 0, 0, 40_000, "2026-11-20 10:00:00"),
            // Recorded on each deployment the watch stops (here dep-2 only): it caps every deployment bought before it crossed.
            CapReached("dep-2", "alr_all", 1.00m, 1.20m, "2026-11-20 10:00:30", tenantWide: true),
            // Bought after the cap crossed: not capped this month, billed in full.
            .. AnHour("dep-3", "2026-11-21"),
            Spilled("dep-3", 0, 0, 50_000, "2026-11-21 00:30:00"),
        ];
        var account = Given(november);

        // dep-1 and dep-2, covered: 0.80 + 0.40 = 1.20, 0.20 above the cap, shared: dep-1 0.20 × 0.80 / 1.20 = 0.133… → 0.13,
        // dep-2 0.20 × 0.40 / 1.20 = 0.066… → 0.07 (they sum to 0.20; a cent left by rounding would go on dep-1, the largest)
        Assert.Equal(
            [(InvoiceLineKind.Spillover, "dep-1", 0.80m), (InvoiceLineKind.Spillover, "dep-2", 0.40m), (InvoiceLineKind.Spillover, "dep-3", 0.50m),
             (InvoiceLineKind.SpilloverAboveCap, "dep-1", -0.13m), (InvoiceLineKind.SpilloverAboveCap, "dep-2", -0.07m)],
            SpilloverOf(Closed(account, November)));
        Assert.Contains("above the tenant-wide cap of 1.00 USD", Closed(account, November).Lines[^1].Description);
        // 3 PTU-hours × 2.35 = 7.05, spillover 1.00 + 0.50
        Assert.Equal(8.55m, Closed(account, November).Total);

        // A late November record of dep-2 alone: the cap was billed in full across dep-1 and dep-2, so none of it is billed.
        var late = Given([.. november, IssueNow(account, November, At("2026-12-03 00:00:00")),
            Spilled("dep-2", 0, 0, 10_000, finishedAt: "2026-11-29 12:00:00", meteredAt: "2026-12-05 00:00:00")]);
        Assert.Equal([(InvoiceLineKind.PriorPeriodAdjustment, "dep-2", 0.10m), (InvoiceLineKind.SpilloverAboveCap, "dep-2", -0.10m)], SpilloverOf(Closed(late, December)));
    }

    [Fact]
    public void A_cap_removed_or_changed_within_its_month_clips_nothing_and_one_changed_after_the_month_still_clips_it()
    {
        object[] crossed =
        [
            Tenant(),
            .. AnHour("dep-1", "2026-11-01"),
            Spilled("dep-1", 0, 0, 110_000, "2026-11-20 10:00:00"),
            CapReached("dep-1", "alr_cap", 1.00m, 1.10m, "2026-11-20 10:00:01"),
        ];
        Assert.Equal(-0.10m, SpilloverOf(Closed(Given(crossed), November)).Single(l => l.Item1 == InvoiceLineKind.SpilloverAboveCap).Item3);

        // Removed or changed on 25 November: not in force at the month's end, so it clips nothing.
        Assert.Equal([(InvoiceLineKind.Spillover, "dep-1", 1.10m)], SpilloverOf(Closed(Given([.. crossed, CapLifted("dep-1", "alr_cap", "2026-11-25 00:00:00")]), November)));
        // In force when November ended: lifted by December's first usage, or the alert removed in December's first days, November stays capped.
        Assert.Equal([(InvoiceLineKind.Spillover, "dep-1", 1.10m), (InvoiceLineKind.SpilloverAboveCap, "dep-1", -0.10m)],
            SpilloverOf(Closed(Given([.. crossed, CapLifted("dep-1", "alr_cap", "2026-12-01 08:00:00", monthEnded: true)]), November)));
        Assert.Equal([(InvoiceLineKind.Spillover, "dep-1", 1.10m), (InvoiceLineKind.SpilloverAboveCap, "dep-1", -0.10m)],
            SpilloverOf(Closed(Given([.. crossed, CapLifted("dep-1", "alr_cap", "2026-12-01 08:00:00")]), November)));
        // Changed to 0.50, then crossed again within the month: the new amount clips.
        Assert.Equal([(InvoiceLineKind.Spillover, "dep-1", 1.10m), (InvoiceLineKind.SpilloverAboveCap, "dep-1", -0.60m)],
            SpilloverOf(Closed(Given([.. crossed, CapLifted("dep-1", "alr_cap", "2026-11-25 00:00:00"), CapReached("dep-1", "alr_cap", 0.50m, 1.10m, "2026-11-25 00:00:01")]), November)));
    }

    [Fact]
    public void Without_a_cap_or_with_one_recorded_before_caps_carried_their_amount_the_spillover_is_billed_whole()
    {
        object[] log =
        [
            Tenant(),
            Created("dep-1", 1m, "2026-11-01 00:00:00"),
            Spilled("dep-1", 0, 0, 110_000, "2026-11-20 10:00:00"),
        ];
        Assert.Equal([(InvoiceLineKind.Spillover, "dep-1", 1.10m)], SpilloverOf(Closed(Given(log), November)));

        // As stored before: no amount, so nothing to clip at, and the month bills as its invoice always did.
        var stored = JsonSerializer.Deserialize<SpilloverCapReached>("""{"DeploymentId":"dep-1","AlertId":"alr_cap","Month":"2026-11","Spend":1.10,"At":"2026-11-20T10:00:01+00:00"}""")!;
        Assert.Equal((null, false), (stored.Cap, stored.TenantWide));
        Assert.Equal(JsonSerializer.Serialize(Closed(Given(log), November)), JsonSerializer.Serialize(Closed(Given([.. log, stored]), November)));
    }

    [Fact]
    public void The_invoice_document_shows_bill_to_dates_lines_credits_and_balance_and_is_the_same_bytes_every_time()
    {
        var account = Given(Tenant(), Created("dep-1", 1m, "2026-11-01 00:00:00"), new DeploymentReleased("dep-1", 1m, At("2026-11-01 10:00:00")));
        var invoice = Invoice.Create(IssueNow(account, November, At("2026-12-03 00:00:00"), lastNumber: 41))
            .Apply(new CreditNoteIssued("cn-00000001", 1, "CN-00000001", "inv-acme-202611", "INV-00000042", "acme", "2026-11", "USD",
                [new CreditNoteLine(1, "Credit on line 1", "gpt-4o", "eastus", DeploymentType.Global, 3.50m)], 3.50m, "outage", null, At("2026-12-10 00:00:00"), "finance"));

        var pdf = InvoiceDocument.Render(invoice);

        Assert.Equal(pdf, InvoiceDocument.Render(invoice));
        using var read = UglyToad.PdfPig.PdfDocument.Open(pdf);
        var text = string.Join("\n", read.GetPages().Select(p => p.Text));
        // 10 PTU-hours × 2.35 = 23.50; less the 3.50 credit: 20.00 due by 2027-01-02
        foreach (var expected in new[] { "Invoice INV-00000042", "Bill to", "Acme", "Invoice date2026-12-03", "Due date2027-01-02", "Service period2026-11-01 – 2026-11-30",
                     "Total23.50", "Credit note CN-00000001, 2026-12-10-3.50", "Balance due20.00" })
            Assert.Contains(expected, text);
    }

    [Fact]
    public void An_invoice_is_issued_only_after_its_month_once_and_with_the_next_number()
    {
        var account = Given(Tenant(), Created("dep-1", 1m, "2026-11-01 00:00:00"));
        var register = new InvoiceRegister(InvoiceRegister.StreamId, 7, 0, 8);

        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Issue.Decide(register, null, account, "acme", November, At("2026-11-30 23:59:59"), "x")).Kind);
        var (numbered, issued) = Assert.IsType<IssuedInvoice>(Issue.Decide(register, null, account, "acme", November, At("2026-12-01 00:00:00"), "x"));
        Assert.Equal((8L, "INV-00000008", "inv-acme-202611"), (numbered.Number, issued.DocumentNumber, issued.InvoiceId));
        // 30 days × 24 h × 1 PTU × 2.35 = 1,692.00
        Assert.Equal(1692.00m, issued.Total);
        Assert.Null(Issue.Decide(register, Invoice.Create(issued), account, "acme", November, At("2026-12-05 00:00:00"), "x"));
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Issue.Decide(register, null, Given(Tenant()), "acme", November, At("2026-12-05 00:00:00"), "x")).Kind);
    }

    [Fact]
    public void A_credit_note_is_numbered_takes_from_the_balance_and_never_more_than_is_left()
    {
        var account = Given(Tenant(), Created("dep-1", 3m, "2026-10-20 00:00:00"), Reserved("res-1", 2m, ReservationTerm.Month, "2026-11-15 12:00:00", 260m));
        var invoice = Invoice.Create(IssueNow(account, November, At("2026-12-03 00:00:00"))); // 2,453.40 + 874.20 + 520.00 = 3,847.60
        var register = new InvoiceRegister(InvoiceRegister.StreamId, 1, 4, 6);

        var first = CreditNotes.Decide(register, invoice, new IssueCreditNote(null, [new CreditLineRequest(2, 100.00m)], "SLA breach on Nov 20"), "k1", At("2026-12-10 00:00:00"), "finance:k");
        var note = Assert.IsType<IssuedCreditNote>(first).Issued;
        Assert.Equal(("CN-00000005", 100.00m, "gpt-4o"), (note.DocumentNumber, note.Total, note.Lines[0].Model));
        invoice = invoice.Apply(note);
        // balance 3,847.60 − 100.00 = 3,747.60; line 2 has 874.20 − 100.00 = 774.20 left
        Assert.Equal(3747.60m, invoice.Balance);
        Assert.Null(CreditNotes.Decide(register, invoice, new IssueCreditNote(null, [new CreditLineRequest(2, 100.00m)], "retry"), "k1", At("2026-12-10 00:00:01"), "finance:k"));
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() =>
            CreditNotes.Decide(register, invoice, new IssueCreditNote(null, [new CreditLineRequest(2, 774.21m)], "too much"), null, At("2026-12-10 00:00:00"), "f")).Kind);
        Assert.Equal(RuleKind.Unprocessable, Assert.Throws<RuleViolation>(() =>
            CreditNotes.Decide(register, invoice, new IssueCreditNote(1.005m, null, "sub-cent"), null, At("2026-12-10 00:00:00"), "f")).Kind);
        Assert.Equal(RuleKind.Unprocessable, Assert.Throws<RuleViolation>(() =>
            CreditNotes.Decide(register, invoice, new IssueCreditNote(null, [new CreditLineRequest(9, 1m)], "no line"), null, At("2026-12-10 00:00:00"), "f")).Kind);

        var rest = Assert.IsType<IssuedCreditNote>(CreditNotes.Decide(register, invoice, new IssueCreditNote(3747.60m, null, "goodwill"), null, At("2026-12-11 00:00:00"), "f")).Issued;
        invoice = invoice.Apply(rest);
        Assert.Equal(0m, invoice.Balance);
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() =>
            CreditNotes.Decide(register, invoice, new IssueCreditNote(0.01m, null, "one cent more"), null, At("2026-12-12 00:00:00"), "f")).Kind);
        // the invoice's own content is untouched by its credit notes
        Assert.Equal(3847.60m, invoice.Total);
    }

    [Fact]
    public void The_draft_of_a_running_month_bills_to_date_and_the_issuer_knows_which_months_are_due()
    {
        var account = Given(Tenant(), Created("dep-1", 1m, "2026-11-01 00:00:00"));
        // to Nov 2 12:00:00: 36 h × 2.35 = 84.60
        Assert.Equal(84.60m, InvoiceCalculation.Compute(account, November, At("2026-11-02 12:00:00")).Total);
        Assert.Equal(November.Index, account.UnissuedSince);
        Assert.Equal(new BillingMonth(2026, 10), AutomaticClose.LastDue(At("2026-12-02 23:59:59"), TimeSpan.FromDays(2)));
        Assert.Equal(November, AutomaticClose.LastDue(At("2026-12-03 00:00:00"), TimeSpan.FromDays(2)));
        Assert.Equal([November], account.OpenMonthsThrough(November));
        var issued = account.Then(IssueNow(account, November, At("2026-12-03 00:00:00")));
        Assert.Equal(December.Index, issued.UnissuedSince);
        Assert.Empty(issued.OpenMonthsThrough(November));
    }

    [Fact]
    public void A_metering_batch_across_midnight_at_a_months_end_bills_each_record_in_the_month_it_finished()
    {
        var created = Created("dep-1", 1m, "2026-11-30 23:00:00");
        MeteredRecord R(long output, string finishedAt) => new("r", "dep-1", 0, 0, output, true, 0, At(finishedAt), At(finishedAt), null);
        var metered = Meter.Decide(Deployment.Create(created), [new ProducerBatch("node", 1, [R(10_000, "2026-11-30 23:59:59"), R(20_000, "2026-12-01 00:00:01"), R(30_000, "2026-11-30 23:59:58")])],
            At("2026-12-01 00:00:02"));
        var usage = Assert.IsType<MeterDecision>(metered).Usage;
        Assert.Equal([("2026-11", 40_000L), ("2026-12", 20_000L)], usage.Months!.Select(m => (m.Month, m.Tokens.SpilledOutputTokens)));

        var account = Given(Tenant(), created, new DeploymentReleased("dep-1", 1m, At("2026-12-01 00:00:00")), usage);
        // November: 1 PTU-hour × 2.35 = 2.35 and output 40,000 × 10 / 1M = 0.40; December: output 20,000 × 10 / 1M = 0.20
        Assert.Equal([2.35m, 0.40m], Closed(account, November).Lines.Select(l => l.Amount));
        Assert.Equal([0.20m], Closed(account, December).Lines.Select(l => l.Amount));
        // one month only: no split
        Assert.Null(Meter.Decide(Deployment.Create(created), [new ProducerBatch("node", 2, [R(1, "2026-11-30 23:10:00")])], At("2026-11-30 23:10:01"))!.Usage.Months);
    }

    [Fact]
    public void Usage_documents_are_named_by_deployment_and_utc_minute_or_hour_as_they_always_were()
    {
        // The hour's id is stored and the minute's is how the API names it: both must keep their form.
        var at = new DateTimeOffset(2026, 3, 4, 1, 5, 59, TimeSpan.FromHours(2));
        Assert.Equal("dep-1:202603032305", UsageMinute.IdOf("dep-1", at));
        Assert.Equal("dep-1:2026030323", UsageHour.IdOf("dep-1", at));
        Assert.Equal("dep-1:" + at.UtcDateTime.ToString("yyyyMMddHHmm", CultureInfo.InvariantCulture), UsageMinute.IdOf("dep-1", at));
    }

    [Fact]
    public void A_page_of_usage_adds_up_per_deployment_and_minute_keeping_the_peak_the_latest_rate_and_the_throttles()
    {
        UsageMetered U(string deployment, string finished, long records, decimal utilization, long rate) =>
            new(deployment, "acme", [], new TokenCounts(records, records * 10, records, records * 2, 0, 0, 0, 0), records * 12m, At(finished), At(finished), 0, utilization, rate, At(finished));
        var minutes = UsageMinuteProjection.Fold([
            new UsageBatchMetered([U("dep-1", "2026-03-04 10:00:05", 2, 0.5m, 600), U("dep-2", "2026-03-04 10:00:06", 1, 0.1m, 300)]),
            new DeploymentThrottled("dep-1", 1.01m, 500, At("2026-03-04 10:00:40")),
            new UsageBatchMetered([U("dep-1", "2026-03-04 10:00:59", 3, 0.9m, 900), U("dep-1", "2026-03-04 10:01:00", 1, 0.2m, 900)]),
            new DeploymentThrottled("dep-3", 1.2m, 500, At("2026-03-04 10:02:00")),
        ]).ToDictionary(m => UsageMinute.IdOf(m.DeploymentId, m.Minute));

        Assert.Equal(["dep-1:202603041000", "dep-1:202603041001", "dep-2:202603041000", "dep-3:202603041002"], minutes.Keys.Order());
        var first = minutes["dep-1:202603041000"];
        Assert.Equal((5L, 50L, 5L, 10L, 60m), (first.Tokens.Records, first.Tokens.PromptTokens, first.Tokens.CachedTokens, first.Tokens.OutputTokens, first.WeightedTokens));
        Assert.Equal((0.9m, 900L, 1), (first.MaxUtilization, first.TokensPerMinute, first.Throttles));
        Assert.Equal((1L, 0.2m, 0), (minutes["dep-1:202603041001"].Tokens.Records, minutes["dep-1:202603041001"].MaxUtilization, minutes["dep-1:202603041001"].Throttles));
        // Throttled with no usage in its minute: the row counts the throttle and leaves the rate to the usage that records one.
        Assert.Equal((0L, 0L, 1), (minutes["dep-3:202603041002"].Tokens.Records, minutes["dep-3:202603041002"].TokensPerMinute, minutes["dep-3:202603041002"].Throttles));
    }

    static decimal Accrued(Accrual a, DateTimeOffset at) => Money.Round(a.Base + a.RatePerSecond * at.ToUnixTimeSeconds(), "USD");

    [Fact]
    public void An_accrual_worked_out_at_one_moment_gives_the_draft_at_any_later_moment_of_the_month_without_events()
    {
        var account = Given(Tenant(),
            Created("dep-1", 3m, "2026-10-20 00:00:00"),
            Created("dep-2", 1m, "2026-11-02 08:00:00"),
            Reserved("res-1", 2m, ReservationTerm.Month, "2026-11-01 00:00:00", 260m),
            Spilled("dep-1", 1_000_000, 200_000, 100_000, "2026-11-03 10:00:00"));

        var november = Assert.Single(Accruals.Of(account, At("2026-11-05 12:00:00")), a => a.Month == November);

        // 4 PTU deployed, 2 covered by the reservation: 2 × 2.35 / 3600 per second from then on.
        Assert.Equal(2m * 2.35m / 3600m, november.RatePerSecond);
        foreach (var later in new[] { "2026-11-05 12:00:00", "2026-11-17 03:04:05", "2026-11-30 23:59:59" })
            Assert.InRange(Accrued(november, At(later)) - InvoiceCalculation.Compute(account, November, At(later)).Total, -0.02m, 0.02m); // the draft rounds per line
    }

    [Fact]
    public void A_month_that_is_over_accrues_its_whole_draft_and_no_rate_and_an_issued_month_nothing()
    {
        var account = Given(Tenant(), Created("dep-1", 2m, "2026-11-20 00:00:00"));
        var accruals = Accruals.Of(account, At("2026-12-01 00:30:00")).ToDictionary(a => a.Month);

        Assert.Equal((Closed(account, November).Total, 0m), (accruals[November].Base, accruals[November].RatePerSecond));
        Assert.Equal(2m * 2.35m / 3600m, accruals[December].RatePerSecond);
        // December 00:00 → 00:30 at 2 PTU: 1,800 × 2 × 2.35 / 3600 = 2.35
        Assert.Equal(2.35m, Accrued(accruals[December], At("2026-12-01 00:30:00")));

        var issued = BillingAccount.Fold(account, "acme", IssueNow(account, November, At("2026-12-03 00:00:00")));
        Assert.Equal(new Accrual(November, 0, 0), Accruals.Of(issued, At("2026-12-03 00:00:00")).Single(a => a.Month == November));
    }
}
