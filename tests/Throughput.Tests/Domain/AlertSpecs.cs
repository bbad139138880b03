using Throughput.Alerts;
using Throughput.Deployments;
using Throughput.Invoicing;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class AlertSpecs
{
    static readonly Spec<Alert, AlertEvent> AlertStream = new((a, e) => a is null ? Alert.Create((AlertSet)e) : a.Then(e));

    static readonly AlertSet SpendAt10 = new("alr_1", "acme", "dep-1", AlertMetric.SpilloverSpend, 10m, true, null, Now);

    static readonly AlertSet UtilizationAt80 = new("alr_2", "acme", null, AlertMetric.Utilization, 0.8m, false, null, Now);

    static SpendAlertCrossed SpendCrossed(decimal spend, string month = "2026-11") => new("alr_1", "acme", "dep-1", 10m, spend, "USD", true, month, Now);

    [Fact]
    public void An_alert_fires_when_its_value_reaches_the_threshold_and_not_below_it()
    {
        AlertStream.Given(SpendAt10).When(a => Alert.Decide(a, 9.99m, "2026-11", "USD", Now)).ThenNothing();
        AlertStream.Given(SpendAt10).When(a => Alert.Decide(a, 10m, "2026-11", "USD", Now)).Then(SpendCrossed(10m));
    }

    [Fact]
    public void A_crossed_alert_does_not_fire_again_in_its_month_however_high_the_value_goes()
    {
        AlertStream.Given(SpendAt10, SpendCrossed(10m)).When(a => Alert.Decide(a, 250m, "2026-11", "USD", Now)).ThenNothing();
    }

    [Fact]
    public void A_new_month_re_arms_it()
    {
        AlertStream.Given(SpendAt10, SpendCrossed(10m)).When(a => Alert.Decide(a, 12m, "2026-12", "USD", Now)).Then(SpendCrossed(12m, "2026-12"));
    }

    [Fact]
    public void Falling_below_the_threshold_re_arms_it_and_reaching_it_again_fires_again()
    {
        var crossed = new UsageAlertCrossed("alr_2", "acme", null, 0.8m, 0.85m, "2026-11", Now);
        AlertStream.Given(UtilizationAt80, crossed).When(a => Alert.Decide(a, 0.7m, "2026-11", "USD", Now)).Then(new AlertRearmed("alr_2", 0.7m, Now));
        AlertStream.Given(UtilizationAt80, crossed, new AlertRearmed("alr_2", 0.7m, Now)).When(a => Alert.Decide(a, 0.9m, "2026-11", "USD", Now))
            .Then(crossed with { Utilization = 0.9m });
    }

    [Fact]
    public void A_changed_alert_is_armed_again_and_a_removed_one_decides_nothing()
    {
        Assert.Null(AlertStream.Given(SpendAt10, SpendCrossed(10m), SpendAt10 with { Threshold = 20m }).State.CrossedIn);
        AlertStream.Given(SpendAt10, new AlertRemoved("alr_1", Now)).When(a => Alert.Decide(a, 50m, "2026-11", "USD", Now)).ThenNothing();
    }

    static UsageMetered Usage(long spilledOutput, decimal weighted, DateTimeOffset finishedAt) =>
        new("dep-1", "acme", [], new TokenCounts(1, 0, 0, spilledOutput, 1, 0, 0, spilledOutput), weighted, finishedAt, finishedAt, 0, 0, 2500, finishedAt);

    [Fact]
    public void Month_to_date_spend_prices_spilled_tokens_at_the_deployments_spillover_prices_and_a_new_month_starts_from_zero()
    {
        var deployment = ActiveDeployment(); // bought at Now, 22 November; spilled output 10.00 per 1M
        var month = MonthToDate.Empty("acme").Add(Usage(30_000, 0, Now.AddHours(1)), deployment).Add(Usage(45_000, 0, Now.AddHours(2)), deployment);
        Assert.Equal(("2026-11", 0.75m), (month.Month, month.ValueOf(AlertMetric.SpilloverSpend, "dep-1")));
        var december = month.Add(Usage(10_000, 0, new DateTimeOffset(2026, 12, 1, 0, 1, 0, TimeSpan.Zero)), deployment);
        Assert.Equal(("2026-12", 0.10m), (december.Month, december.ValueOf(AlertMetric.SpilloverSpend, null)));
        // November usage metered late is November's: it moves no alert of December
        Assert.Equal(0.10m, december.Add(Usage(10_000, 0, Now.AddHours(3)), deployment).ValueOf(AlertMetric.SpilloverSpend, null));
    }

    [Fact]
    public void Utilization_is_served_over_what_the_purchased_rate_allowed_since_the_purchase()
    {
        var deployment = ActiveDeployment(); // 2,500 weighted tokens per minute
        // an hour after the purchase, 75,000 of the 150,000 allowed were served: 50 %
        var month = MonthToDate.Empty("acme").Add(Usage(0, 75_000, Now.AddHours(1)), deployment);
        Assert.Equal(0.5m, month.ValueOf(AlertMetric.Utilization, "dep-1"));
        Assert.Equal(0m, month.ValueOf(AlertMetric.Utilization, "dep-other"));
    }

    [Fact]
    public void A_watch_begun_mid_month_counts_what_the_rate_allowed_from_then_as_it_counts_served_usage_from_then()
    {
        var deployment = ActiveDeployment() with { CreatedAt = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero) };
        // the tenant's first alert came three weeks into the month; its first usage after it: an hour at half the rate
        var watched = MonthToDate.Empty("acme", Now).Add(Usage(0, 75_000, Now.AddHours(1)), deployment);
        Assert.Equal(0.5m, watched.ValueOf(AlertMetric.Utilization, "dep-1"));
        // the next month counts from its start again
        var december = new DateTimeOffset(2026, 12, 1, 1, 0, 0, TimeSpan.Zero);
        Assert.Equal(0.25m, watched.Add(Usage(0, 37_500, december), deployment).ValueOf(AlertMetric.Utilization, "dep-1"));
    }

    [Fact]
    public void A_cap_refuses_spilled_records_of_its_month_only_and_admission_spills_again_the_next_month()
    {
        var capped = DeploymentStream.Given(Created() with { Spillover = true }, new SpilloverCapReached("dep-1", "alr_1", "2026-11", 10m, Now)).State;
        var december = new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero);
        Assert.Equal((true, false), (capped.SpilloverCapped(Now.AddDays(1)), capped.SpillsAt(Now)));
        Assert.Equal((false, true), (capped.SpilloverCapped(december), capped.SpillsAt(december)));
        // the month's end is told to serving nodes; records of the capped month stay refused
        var lifted = capped.Then(new SpilloverCapLifted("dep-1", "alr_1", MonthEnded: true, december));
        Assert.Equal((true, capped.AdmissionRevision + 1), (lifted.SpilloverCapped(Now.AddDays(1)), lifted.AdmissionRevision));
        // removing the alert lifts it at once
        Assert.True(capped.Then(new SpilloverCapLifted("dep-1", "alr_1", MonthEnded: false, Now)).SpillsAt(Now));
    }

    [Fact]
    public void An_invoice_alert_fires_once_when_the_months_draft_reaches_it_and_again_the_next_month()
    {
        var invoiceAt100 = new AlertSet("alr_3", "acme", null, AlertMetric.InvoiceToDate, 100m, false, null, Now);
        var crossed = new InvoiceAlertCrossed("alr_3", "acme", null, 100m, 100.40m, "USD", "2026-11", Now);
        AlertStream.Given(invoiceAt100).When(a => Alert.Decide(a, 99.99m, "2026-11", "USD", Now)).ThenNothing();
        AlertStream.Given(invoiceAt100).When(a => Alert.Decide(a, 100.40m, "2026-11", "USD", Now)).Then(crossed);
        AlertStream.Given(invoiceAt100, crossed).When(a => Alert.Decide(a, 900m, "2026-11", "USD", Now)).ThenNothing();
        AlertStream.Given(invoiceAt100, crossed).When(a => Alert.Decide(a, 120m, "2026-12", "USD", Now)).Then(crossed with { InvoiceToDate = 120m, Month = "2026-12" });
    }

    [Fact]
    public void Invoice_to_date_is_the_drafts_total_or_the_sum_of_one_deployments_lines()
    {
        // gpt-4o in USD: 1.00 per PTU-hour
        var account = new object[] { AcmeCreated(), Created(), Created(2m) with { DeploymentId = "dep-2" } }.Aggregate((BillingAccount?)null, (a, e) => BillingAccount.Fold(a, "acme", e))!;
        // ten hours on: dep-1 1 PTU × 10 h × 1.00 = 10.00; dep-2 2 PTU × 10 h × 1.00 = 20.00
        var draft = InvoiceCalculation.Compute(account, BillingMonth.Of(Now), Now.AddHours(10));
        Assert.Equal((10.00m, 20.00m, 30.00m), (InvoiceWatch.Value(draft, "dep-1"), InvoiceWatch.Value(draft, "dep-2"), InvoiceWatch.Value(draft, null)));
        Assert.Equal(0m, InvoiceWatch.Value(draft, "dep-other"));
    }
}
