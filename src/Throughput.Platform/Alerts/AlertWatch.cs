using JasperFx.Events;
using Marten;
using Marten.Events.Projections;
using Throughput.Deployments;

namespace Throughput.Alerts;

/// <summary>
/// Evaluates alerts as usage arrives, as a member of the read models' composite projection (async daemon, leader only):
/// it folds each page's usage into its tenants' <see cref="MonthToDate"/>, written in the page's batch with the read
/// models and its own <see cref="AlertWatchProgress"/>, and records what crossed as events on the alerts' streams, and a
/// reached cap as <see cref="SpilloverCapReached"/> on the deployments' streams, where metering and admission read it.
/// A member rather than a subscription of its own: the read models already read and deserialize every usage event, and
/// a second reader of each (at 10,000 deployments, thousands of entries per event) cost a sixth of the machine's time
/// per record (docs/metering.md). Those events are committed just before the page's batch: a crash between the two
/// replays the page, and the alerts and deployments, already moved, decide nothing twice.
/// </summary>
public sealed class AlertWatch : IProjection
{
    public static readonly Type[] EventTypes = [typeof(UsageMetered), typeof(UsageBatchMetered), typeof(AlertSet), typeof(AlertRemoved)];

    public async Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        var ct = cancellation;
        var progress = await AlertWatchProgress.LoadAsync(operations, ct);
        var page = events.Where(e => e.Sequence > progress.Sequence).ToList();
        if (page.Count == 0) return;
        await DecideAsync(page, operations, ct);
        operations.Store(progress with { Sequence = page[^1].Sequence });
    }

    static async Task DecideAsync(List<IEvent> page, IDocumentOperations operations, CancellationToken ct)
    {
        List<UsageMetered> usage = [];
        List<(string AlertId, DateTimeOffset At)> changedAlerts = [];
        foreach (var e in page)
        {
            switch (e.Data)
            {
                case UsageBatchMetered b: usage.AddRange(b.Usage.Where(u => u.TenantId is not null)); break;
                case UsageMetered u when u.TenantId is not null: usage.Add(u); break;
                case AlertSet s: changedAlerts.Add((s.AlertId, s.At)); break;
                case AlertRemoved r: changedAlerts.Add((r.AlertId, r.At)); break;
            }
        }
        var tenantIds = usage.Select(u => u.TenantId!).Distinct().ToArray();
        var alerts = tenantIds.Length == 0 ? [] : await operations.Query<Alert>()
            .Where(a => tenantIds.Contains(a.TenantId) && !a.Removed && a.Metric != AlertMetric.InvoiceToDate).ToListAsync(ct); // InvoiceWatch has those
        var watched = alerts.Select(a => a.TenantId).ToHashSet();
        var deploymentIds = usage.Where(u => watched.Contains(u.TenantId!)).Select(u => u.DeploymentId).Distinct().ToArray();
        var deployments = (await operations.LoadManyAsync<Deployment>(ct, deploymentIds)).ToDictionary(d => d.Id);

        List<(string AlertId, object[] Events)> toAlerts = [];
        List<(string DeploymentId, DeploymentEvent Event)> toDeployments = [];
        var months = (await operations.LoadManyAsync<MonthToDate>(ct, [.. watched])).ToDictionary(m => m.Id);
        foreach (var u in usage)
        {
            if (!deployments.TryGetValue(u.DeploymentId, out var deployment)) continue; // a tenant without alerts
            months[u.TenantId!] = months.GetValueOrDefault(u.TenantId!, MonthToDate.Empty(u.TenantId!, u.FirstStartedAt)).Add(u, deployment);
            // The cap held in an earlier month: the deployment's first usage of a later one turns spillover back on for serving nodes.
            if (deployment is { SpilloverCappedIn: { } capped, SpilloverCappedBy: { } by } && string.CompareOrdinal(capped, Deployment.MonthOf(u.LastFinishedAt)) < 0)
            {
                var lifted = new SpilloverCapLifted(deployment.Id, by, MonthEnded: true, u.MeteredAt);
                toDeployments.Add((deployment.Id, lifted));
                deployments[deployment.Id] = deployment.Then(lifted);
            }
        }
        operations.Store<MonthToDate>([.. months.Values]);

        var now = usage.Count > 0 ? usage.Max(u => u.MeteredAt) : page[^1].Timestamp; // the platform's clock, as metering read it
        foreach (var alert in alerts)
        {
            if (!months.TryGetValue(alert.TenantId, out var month)) continue;
            var currency = deployments.Values.FirstOrDefault(d => d.TenantId == alert.TenantId)?.Currency ?? "";
            var events = Alert.Decide(alert, month.ValueOf(alert.Metric, alert.DeploymentId), month.Month, currency, now);
            if (events.Length == 0) continue;
            toAlerts.Add((alert.Id, events));
            foreach (var crossed in events.OfType<SpendAlertCrossed>().Where(c => c.CapsSpillover))
                foreach (var d in await CappedAsync(crossed.DeploymentId is { } one ? [one] : null, alert.TenantId))
                    if (d.Status == DeploymentStatus.Active && d.SpilloverCappedIn != crossed.Month)
                        toDeployments.Add((d.Id, new SpilloverCapReached(d.Id, alert.Id, crossed.Month, crossed.Spend, now, crossed.Threshold, crossed.DeploymentId is null)));
        }

        // A changed or removed alert lets go of the caps it set; a change is evaluated again with the next usage.
        // Lifted as of the change itself (the host's clock), which decides whether the cap still clips its month's invoice.
        foreach (var (alertId, at) in changedAlerts.GroupBy(c => c.AlertId).Select(g => g.Last()))
            if (await operations.LoadAsync<Alert>(alertId, ct) is { } changed)
                foreach (var d in await CappedAsync(null, changed.TenantId))
                    if (d.SpilloverCappedBy == alertId && (changed.Removed || changed.CrossedIn is null))
                        toDeployments.Add((d.Id, new SpilloverCapLifted(d.Id, alertId, MonthEnded: false, at)));

        await AppendAsync(operations.DocumentStore, toAlerts, toDeployments, ct);

        async Task<IReadOnlyList<Deployment>> CappedAsync(string[]? ids, string tenantId) => ids is not null
            ? ids.Select(id => deployments.GetValueOrDefault(id)).OfType<Deployment>().ToList() is { Count: > 0 } known ? known : await operations.LoadManyAsync<Deployment>(ct, ids)
            : await operations.Query<Deployment>().Where(d => d.TenantId == tenantId).ToListAsync(ct);
    }

    /// <summary>
    /// Commits what the page decided in one transaction. A deployment's events go through <c>FetchForWriting</c>, as every
    /// other writer of its stream does: with quick appends, only a known stream version gives its snapshot the right
    /// version. A customer's change to the same deployment meanwhile fails the commit, which is then tried again.
    /// </summary>
    static async Task AppendAsync(IDocumentStore store, List<(string AlertId, object[] Events)> toAlerts,
        List<(string DeploymentId, DeploymentEvent Event)> toDeployments, CancellationToken ct)
    {
        if (toAlerts.Count == 0 && toDeployments.Count == 0) return;
        for (var attempt = 1; ; attempt++)
        {
            await using var session = store.LightweightSession();
            foreach (var (alertId, events) in toAlerts) session.Events.Append(alertId, events);
            foreach (var stream in toDeployments.GroupBy(x => x.DeploymentId))
                (await session.Events.FetchForWriting<Deployment>(stream.Key, ct)).AppendMany(stream.Select(x => (object)x.Event));
            try
            {
                await session.SaveChangesAsync(ct);
                return;
            }
            catch (JasperFx.ConcurrencyException) when (attempt < 5)
            {
            }
        }
    }
}
