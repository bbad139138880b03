using System.Collections.Immutable;
using JasperFx.Events;
using Marten;
using Throughput.Capacity;
using Throughput.Deployments;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>
/// A pool's deployment-hours in one month: how many hours with usage fell in each utilization band, and the deployments
/// holding PTUs as level changes (their integral is the deployment-hours sold). A finance read costs the pools and
/// months, never the deployments or their hours.
/// </summary>
public sealed record PoolUtilization(string Id, string PoolId, int Period, ImmutableDictionary<string, long> UsedHours, LevelChanges Deployed)
{
    public static string IdOf(string poolId, int period) => $"{poolId}|{period}";

    public static PoolUtilization Empty(string poolId, int period) => new(IdOf(poolId, period), poolId, period, ImmutableDictionary<string, long>.Empty, default);

    public PoolUtilization Count(string band, long hours) => this with { UsedHours = UsedHours.SetItem(band, UsedHours.GetValueOrDefault(band) + hours) };

    public PoolUtilization Deploy(decimal change, DateTimeOffset at) => this with { Deployed = Deployed.Add(change, BillingMonth.FromIndex(Period), at) };

    public PoolUtilization Plus(PoolUtilization change) =>
        change.UsedHours.Aggregate(this, (sum, band) => sum.Count(band.Key, band.Value)) with { Deployed = Deployed + change.Deployed };
}

/// <summary>Which pool a deployment draws from and whether it holds PTUs now: what the utilization fold needs of it.</summary>
public sealed record PooledDeployment(string Id, string PoolId, bool HoldsPtus);

/// <summary>
/// One page of the log folded into pool utilization: the deployments and hours it touched, as they are after it, and
/// per pool and month what changed (an hour moving from one band to another counts −1 in the old, +1 in the new).
/// </summary>
public sealed record UtilizationPage(
    IReadOnlyDictionary<string, PooledDeployment> Deployments,
    IReadOnlyDictionary<string, UsageHour> Hours,
    IReadOnlyDictionary<string, PoolUtilization> Changes)
{
    public static UtilizationPage Fold(IEnumerable<object> events, IReadOnlyDictionary<string, PooledDeployment> knownDeployments, IReadOnlyDictionary<string, UsageHour> knownHours)
    {
        var deployments = new Dictionary<string, PooledDeployment>(StringComparer.Ordinal);
        var hours = new Dictionary<string, UsageHour>(StringComparer.Ordinal);
        var changes = new Dictionary<string, PoolUtilization>(StringComparer.Ordinal);

        PooledDeployment? DeploymentOf(string id) => deployments.GetValueOrDefault(id) ?? knownDeployments.GetValueOrDefault(id);

        void Change(string poolId, int period, Func<PoolUtilization, PoolUtilization> change)
        {
            var id = PoolUtilization.IdOf(poolId, period);
            changes[id] = change(changes.GetValueOrDefault(id) ?? PoolUtilization.Empty(poolId, period));
        }

        void Hold(string deploymentId, bool holds, DateTimeOffset at)
        {
            if (DeploymentOf(deploymentId) is not { } d || d.HoldsPtus == holds) return;
            deployments[d.Id] = d with { HoldsPtus = holds };
            Change(d.PoolId, BillingMonth.Of(at).Index, m => m.Deploy(holds ? 1 : -1, at));
        }

        void Use(UsageMetered usage)
        {
            var id = UsageHour.IdOf(usage.DeploymentId, usage.LastFinishedAt);
            var before = hours.GetValueOrDefault(id) ?? knownHours.GetValueOrDefault(id);
            var after = (before ?? UsageHour.Empty(usage.DeploymentId, usage.LastFinishedAt)).Add(usage);
            hours[id] = after;
            if (DeploymentOf(usage.DeploymentId) is not { } d) return;
            var beforeBand = before is null ? null : UtilizationView.BandOf(before.Utilization);
            var afterBand = UtilizationView.BandOf(after.Utilization);
            if (beforeBand == afterBand) return;
            Change(d.PoolId, after.Period, m => (beforeBand is null ? m : m.Count(beforeBand, -1)).Count(afterBand, 1));
        }

        foreach (var e in events)
        {
            switch (e)
            {
                case DeploymentCreated c:
                    deployments[c.DeploymentId] = new PooledDeployment(c.DeploymentId, CapacityPool.StreamId(c.Model, c.Region), false);
                    Hold(c.DeploymentId, c.Ptu > 0, c.CreatedAt);
                    break;
                case DeploymentResized r:
                    Hold(r.DeploymentId, r.ToPtu > 0, r.ResizedAt);
                    break;
                case DeploymentReleased r:
                    Hold(r.DeploymentId, false, r.ReleasedAt);
                    break;
                case UsageBatchMetered b:
                    foreach (var usage in b.Usage) Use(usage);
                    break;
                case UsageMetered usage:
                    Use(usage);
                    break;
            }
        }
        return new UtilizationPage(deployments, hours, changes);
    }
}

/// <summary>
/// Pool utilization and the hourly usage it is counted from, one page of the log at a time: the hours a page touches and
/// their deployments are loaded once, folded in memory, and written back with the pools' month documents. It is one
/// projection rather than an hourly one and a pool one because an hour's band change needs the hour as it was before
/// the page, which another projection of the same log may not have reached or may have passed.
/// </summary>
public sealed class PoolUtilizationProjection : Marten.Events.Projections.IProjection
{
    public static readonly Type[] EventTypes =
        [typeof(DeploymentCreated), typeof(DeploymentResized), typeof(DeploymentReleased), typeof(UsageBatchMetered), typeof(UsageMetered)];

    public async Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        var deploymentIds = new HashSet<string>(StringComparer.Ordinal);
        var hourIds = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in events)
        {
            switch (e.Data)
            {
                case DeploymentResized r: deploymentIds.Add(r.DeploymentId); break;
                case DeploymentReleased r: deploymentIds.Add(r.DeploymentId); break;
                case UsageBatchMetered b:
                    foreach (var u in b.Usage) Touch(u);
                    break;
                case UsageMetered u: Touch(u); break;
            }
        }

        var known = await operations.LoadManyAsync<PooledDeployment>(cancellation, deploymentIds);
        var hours = await operations.LoadManyAsync<UsageHour>(cancellation, hourIds);
        var page = UtilizationPage.Fold(events.Select(e => e.Data),
            known.ToDictionary(d => d.Id, StringComparer.Ordinal), hours.ToDictionary(h => h.Id, StringComparer.Ordinal));

        var months = (await operations.LoadManyAsync<PoolUtilization>(cancellation, page.Changes.Keys)).ToDictionary(m => m.Id, StringComparer.Ordinal);
        if (page.Changes.Count > 0) operations.Store(page.Changes.Values.Select(c => months.TryGetValue(c.Id, out var m) ? m.Plus(c) : c).ToArray());
        if (page.Deployments.Count > 0) operations.Store(page.Deployments.Values.ToArray());
        if (page.Hours.Count > 0) operations.Store(page.Hours.Values.ToArray());
        return;

        void Touch(UsageMetered u)
        {
            deploymentIds.Add(u.DeploymentId);
            hourIds.Add(UsageHour.IdOf(u.DeploymentId, u.LastFinishedAt));
        }
    }
}
