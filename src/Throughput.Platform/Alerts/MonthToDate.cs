using System.Collections.Immutable;
using Throughput.Deployments;
using Throughput.Invoicing;

namespace Throughput.Alerts;

/// <summary>One deployment's month so far: spillover spend, weighted tokens served, and the weighted tokens its rate allowed through <see cref="Through"/>.</summary>
public sealed record DeploymentMonth(decimal SpilloverSpend, decimal Served, decimal Allowed, DateTimeOffset Through);

/// <summary>
/// A tenant's month to date (UTC), folded from usage by <see cref="AlertWatch"/>: what its alerts compare with their
/// thresholds. Usage that finished in an earlier month than <see cref="Month"/> is billed there but changes no alert.
/// <see cref="Since"/> is when the watch began (the tenant's first usage after its first alert): served usage counts from
/// then, so what the rate allowed counts from then too in that first month, not from the month's start.
/// </summary>
public sealed record MonthToDate(string Id, string Month, ImmutableDictionary<string, DeploymentMonth> Deployments, DateTimeOffset? Since = null)
{
    public static MonthToDate Empty(string tenantId, DateTimeOffset? since = null) => new(tenantId, "", ImmutableDictionary<string, DeploymentMonth>.Empty, since);

    /// <summary>
    /// Folds one usage event of <paramref name="deployment"/>: each month's spilled tokens at its spillover prices (unrounded:
    /// the invoice rounds per line), and served against allowed for the month its last record finished in. Allowed grows by
    /// the rate the event reports over the time since the deployment's previous usage this month (or since the month, or the
    /// deployment, began).
    /// </summary>
    public MonthToDate Add(UsageMetered usage, Deployment deployment)
    {
        var state = this;
        foreach (var (service, tokens) in new ServiceMonths(usage))
        {
            var name = service.ToString();
            state = state.At(name).Change(usage.DeploymentId, name, m => m with { SpilloverSpend = m.SpilloverSpend + SpendOf(tokens, deployment) });
        }
        var month = Deployment.MonthOf(usage.LastFinishedAt);
        return state.At(month).Change(usage.DeploymentId, month, m =>
        {
            var from = m.Through > deployment.CreatedAt ? m.Through : deployment.CreatedAt;
            var minutes = usage.LastFinishedAt > from ? (decimal)(usage.LastFinishedAt - from).TotalMinutes : 0;
            return m with { Served = m.Served + usage.WeightedTokens, Allowed = m.Allowed + minutes * usage.TokensPerMinute, Through = usage.LastFinishedAt > m.Through ? usage.LastFinishedAt : m.Through };
        });
    }

    /// <summary>The value an alert compares: of its deployment, or of all the tenant's deployments together.</summary>
    public decimal ValueOf(AlertMetric metric, string? deploymentId)
    {
        var months = deploymentId is null ? Deployments.Values : Deployments.TryGetValue(deploymentId, out var one) ? [one] : [];
        return metric switch
        {
            AlertMetric.Utilization => months.Sum(m => m.Allowed) is > 0 and var allowed ? decimal.Round(months.Sum(m => m.Served) / allowed, 6) : 0,
            _ => months.Sum(m => m.SpilloverSpend),
        };
    }

    static decimal SpendOf(TokenCounts t, Deployment d) => d.Prices is not { } p ? 0
        : (t.SpilledInputTokens * p.SpilloverInputPerMillion + t.SpilledCachedTokens * p.SpilloverCachedPerMillion + t.SpilledOutputTokens * p.SpilloverOutputPerMillion) / 1_000_000m;

    /// <summary>A later month starts from nothing; an earlier one is ignored (the returned state is this one, with the change dropped by <see cref="Change"/>).</summary>
    MonthToDate At(string month) => string.CompareOrdinal(month, Month) > 0 ? this with { Month = month, Deployments = Deployments.Clear() } : this;

    MonthToDate Change(string deploymentId, string month, Func<DeploymentMonth, DeploymentMonth> change)
    {
        if (month != Month) return this;
        var start = new DateTimeOffset(int.Parse(month[..4], System.Globalization.CultureInfo.InvariantCulture), int.Parse(month[5..], System.Globalization.CultureInfo.InvariantCulture), 1, 0, 0, 0, TimeSpan.Zero);
        if (Since > start) start = Since.Value;
        var current = Deployments.TryGetValue(deploymentId, out var m) ? m : new DeploymentMonth(0, 0, 0, start);
        return this with { Deployments = Deployments.SetItem(deploymentId, change(current)) };
    }
}
