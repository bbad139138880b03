namespace Throughput.Alerts;

/// <summary>What an alert watches, month to date (UTC): docs/alerts.md defines each.</summary>
public enum AlertMetric
{
    /// <summary>Weighted tokens served ÷ the tokens the purchased rate allowed, month to date; a ratio (0.8 = 80 %).</summary>
    Utilization,

    /// <summary>Spilled tokens priced at the deployment's spillover prices, month to date, in the tenant's currency.</summary>
    SpilloverSpend,

    /// <summary>The month's draft invoice total so far, in the tenant's currency: of the deployment's lines, or the whole draft tenant-wide.</summary>
    InvoiceToDate,
}

/// <summary>An event of an alert's stream.</summary>
public abstract record AlertEvent(string AlertId);

/// <summary>An alert was created, or changed (a change re-arms it); null <see cref="DeploymentId"/>: the tenant's deployments together.</summary>
public sealed record AlertSet(string AlertId, string TenantId, string? DeploymentId, AlertMetric Metric, decimal Threshold, bool CapsSpillover, string? Name,
    DateTimeOffset At) : AlertEvent(AlertId);

public sealed record AlertRemoved(string AlertId, DateTimeOffset At) : AlertEvent(AlertId);

/// <summary>Month-to-date utilization reached the alert's threshold (webhook <c>usage.alert_crossed</c>).</summary>
public sealed record UsageAlertCrossed(string AlertId, string TenantId, string? DeploymentId, decimal Threshold, decimal Utilization, string Month, DateTimeOffset At)
    : AlertEvent(AlertId);

/// <summary>Month-to-date spillover spend reached the alert's threshold (webhook <c>spend.alert_crossed</c>); a cap then stops spillover for the month.</summary>
public sealed record SpendAlertCrossed(string AlertId, string TenantId, string? DeploymentId, decimal Threshold, decimal Spend, string Currency, bool CapsSpillover,
    string Month, DateTimeOffset At) : AlertEvent(AlertId);

/// <summary>The month's draft invoice total so far reached the alert's threshold (webhook <c>invoice.alert_crossed</c>).</summary>
public sealed record InvoiceAlertCrossed(string AlertId, string TenantId, string? DeploymentId, decimal Threshold, decimal InvoiceToDate, string Currency, string Month,
    DateTimeOffset At) : AlertEvent(AlertId);

/// <summary>The watched value went back below the threshold within the month: the next reaching of it is a new crossing.</summary>
public sealed record AlertRearmed(string AlertId, decimal Value, DateTimeOffset At) : AlertEvent(AlertId);

/// <summary>
/// An alert and whether it has crossed: <see cref="CrossedIn"/> is the month (<c>yyyy-MM</c>) of its last crossing while
/// it stays above the threshold; any other month finds it armed again.
/// </summary>
public sealed record Alert(
    string Id,
    string TenantId,
    string? DeploymentId,
    AlertMetric Metric,
    decimal Threshold,
    bool CapsSpillover,
    string? Name,
    DateTimeOffset SetAt,
    bool Removed = false,
    string? CrossedIn = null,
    DateTimeOffset? LastCrossedAt = null,
    decimal? LastCrossedValue = null,
    long Version = 0)
{
    public static Alert Create(AlertSet e) => new(e.AlertId, e.TenantId, e.DeploymentId, e.Metric, e.Threshold, e.CapsSpillover, e.Name, e.At);

    public Alert Apply(AlertSet e) => Create(e) with { LastCrossedAt = LastCrossedAt, LastCrossedValue = LastCrossedValue };

    public Alert Apply(AlertRemoved e) => this with { Removed = true, CrossedIn = null };

    public Alert Apply(UsageAlertCrossed e) => this with { CrossedIn = e.Month, LastCrossedAt = e.At, LastCrossedValue = e.Utilization };

    public Alert Apply(SpendAlertCrossed e) => this with { CrossedIn = e.Month, LastCrossedAt = e.At, LastCrossedValue = e.Spend };

    public Alert Apply(InvoiceAlertCrossed e) => this with { CrossedIn = e.Month, LastCrossedAt = e.At, LastCrossedValue = e.InvoiceToDate };

    public Alert Apply(AlertRearmed e) => this with { CrossedIn = null };

    public Alert Then(AlertEvent @event) => @event switch
    {
        AlertSet e => Apply(e),
        AlertRemoved e => Apply(e),
        UsageAlertCrossed e => Apply(e),
        SpendAlertCrossed e => Apply(e),
        InvoiceAlertCrossed e => Apply(e),
        AlertRearmed e => Apply(e),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an event of an alert"),
    };

    /// <summary>Whether it is crossed in <paramref name="month"/>: a new month re-arms every alert (month-to-date values start again from 0).</summary>
    public bool CrossedDuring(string month) => CrossedIn == month;

    /// <summary>
    /// The alert against its value this month: a crossing once when the value reaches the threshold, a re-arm when it falls
    /// back under it, nothing otherwise. Fires once per crossing however often it is evaluated.
    /// </summary>
    public static AlertEvent[] Decide(Alert alert, decimal value, string month, string currency, DateTimeOffset now)
    {
        if (alert.Removed) return [];
        var crossed = alert.CrossedDuring(month);
        if (crossed && value < alert.Threshold) return [new AlertRearmed(alert.Id, value, now)];
        if (crossed || value < alert.Threshold) return [];
        return alert.Metric switch
        {
            AlertMetric.Utilization => [new UsageAlertCrossed(alert.Id, alert.TenantId, alert.DeploymentId, alert.Threshold, value, month, now)],
            AlertMetric.InvoiceToDate => [new InvoiceAlertCrossed(alert.Id, alert.TenantId, alert.DeploymentId, alert.Threshold, value, currency, month, now)],
            _ => [new SpendAlertCrossed(alert.Id, alert.TenantId, alert.DeploymentId, alert.Threshold, value, currency, alert.CapsSpillover, month, now)],
        };
    }
}
