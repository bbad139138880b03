using System.Collections.Immutable;
using System.Runtime.InteropServices;
using JasperFx.Events;
using Marten;
using Throughput.Capacity;
using Throughput.Deployments;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>
/// A pool's deployment-hours in one month: how many hours with usage fell in each utilization band, and the deployments
/// holding PTUs as level changes (their integral is the deployment-hours sold). A deployment counts in the pools it is
/// placed in, in proportion to its placed PTUs (a split 3 + 1 counts 0.75 in one pool, 0.25 in the other). A finance read
/// costs the pools and months, never the deployments or their hours.
/// </summary>
public sealed record PoolUtilization(string Id, string PoolId, int Period, ImmutableDictionary<string, decimal> UsedHours, LevelChanges Deployed)
{
    /// <summary>Weighted tokens served from the pool in the month (by record time), its deployments' usage shared by placement.</summary>
    public decimal Served { get; init; }

    /// <summary>PTUs bought in the pool's region (what invoices name), wherever they are placed.</summary>
    public LevelChanges Bought { get; init; }

    public static string IdOf(string poolId, int period) => $"{poolId}|{period}";

    public static PoolUtilization Empty(string poolId, int period) => new(IdOf(poolId, period), poolId, period, ImmutableDictionary<string, decimal>.Empty, default);

    public PoolUtilization Count(string band, decimal hours) => this with { UsedHours = UsedHours.SetItem(band, UsedHours.GetValueOrDefault(band) + hours) };

    public PoolUtilization Deploy(decimal change, DateTimeOffset at) => this with { Deployed = Deployed.Add(change, BillingMonth.FromIndex(Period), at) };

    public PoolUtilization Buy(decimal ptu, DateTimeOffset at) => this with { Bought = Bought.Add(ptu, BillingMonth.FromIndex(Period), at) };

    public PoolUtilization Plus(PoolUtilization change) =>
        change.UsedHours.Aggregate(this, (sum, band) => sum.Count(band.Key, band.Value)) with
        {
            Deployed = Deployed + change.Deployed, Served = Served + change.Served, Bought = Bought + change.Bought,
        };
}

/// <summary>
/// Weighted tokens a pool served in one UTC minute (by record time). Each pool keeps <see cref="Slots"/> of them, a minute
/// taking the slot of the minute <see cref="Slots"/> before it, so the recent window costs the pools, not the time run.
/// </summary>
public sealed record PoolMinute(string Id, string PoolId, DateTimeOffset Minute, decimal WeightedTokens)
{
    public const int Slots = 10;

    public static DateTimeOffset MinuteOf(DateTimeOffset at) => DateTimeOffset.FromUnixTimeSeconds(at.ToUnixTimeSeconds() / 60 * 60);

    public static string IdOf(string poolId, DateTimeOffset minute) => $"{poolId}|m{minute.ToUnixTimeSeconds() / 60 % Slots}";

    /// <summary>This slot after more tokens of <paramref name="minute"/>: a later minute takes the slot over, an earlier one is too old to keep.</summary>
    public static PoolMinute Add(PoolMinute? slot, string poolId, DateTimeOffset minute, decimal weightedTokens) =>
        slot is null || slot.Minute < minute ? new PoolMinute(IdOf(poolId, minute), poolId, minute, weightedTokens)
        : slot.Minute == minute ? slot with { WeightedTokens = slot.WeightedTokens + weightedTokens }
        : slot;
}

/// <summary>
/// Which pools a deployment counts in — as shares of one, in proportion to its placed PTUs — and whether it holds PTUs now:
/// what the utilization fold needs of it. <see cref="PoolId"/> is the pool of the region it was bought in.
/// </summary>
public sealed record PooledDeployment(string Id, string PoolId, bool HoldsPtus)
{
    /// <summary>Null in documents written before placement counted: the deployment counts whole in <see cref="PoolId"/>.</summary>
    public ImmutableDictionary<string, decimal>? Pools { get; init; }

    public ImmutableDictionary<string, decimal> CountsIn => Pools ?? ImmutableDictionary<string, decimal>.Empty.Add(PoolId, 1);

    /// <summary>The shares of one of each pool a placement puts the deployment in; none when nothing of it is placed.</summary>
    public ImmutableDictionary<string, decimal> Weights(IReadOnlyList<PlacedPtu> shares)
    {
        var placed = shares.Sum(s => s.Ptu);
        // Pool ids are pool:{model}:{region}, and a region has no colon: the model's part is the bought pool's.
        var model = PoolId[..(PoolId.LastIndexOf(':') + 1)];
        return placed <= 0 ? ImmutableDictionary<string, decimal>.Empty
            : shares.Where(s => s.Ptu > 0).ToImmutableDictionary(s => model + s.Region, s => s.Ptu / placed);
    }
}

/// <summary>
/// One page of the log folded into pool utilization: the deployments and hours it touched, as they are after it, and
/// per pool and month what changed (an hour moving from one band to another counts −1 in the old, +1 in the new, times
/// the deployment's share in the pool when the hour was first counted), and the pools' minutes it served in.
/// </summary>
public sealed record UtilizationPage(
    IReadOnlyDictionary<string, PooledDeployment> Deployments,
    IReadOnlyDictionary<string, UsageHour> Hours,
    IReadOnlyDictionary<string, PoolUtilization> Changes)
{
    /// <summary>Per pool and minute slot, the weighted tokens the page served (to add to the stored slot with <see cref="PoolMinute.Add"/>).</summary>
    public IReadOnlyDictionary<string, PoolMinute> Minutes { get; init; } = new Dictionary<string, PoolMinute>();

    public static UtilizationPage Fold(IEnumerable<object> events, IReadOnlyDictionary<string, PooledDeployment> knownDeployments, IReadOnlyDictionary<string, UsageHour> knownHours)
    {
        var deployments = new Dictionary<string, PooledDeployment>(StringComparer.Ordinal);
        var hours = new Dictionary<string, UsageHour.Tally>(StringComparer.Ordinal);
        var changes = new Dictionary<string, PoolUtilization>(StringComparer.Ordinal);
        // What usage served adds up, so it is summed per pool and month and per pool and minute, and applied once.
        var served = new Dictionary<(string Pool, int Period), decimal>();
        var servedByMinute = new Dictionary<(string Pool, DateTimeOffset Minute), decimal>();
        var hourIds = UsageHourIds.Create();
        var monthIds = new FormattedOnce<(string Pool, int Period)>(k => PoolUtilization.IdOf(k.Pool, k.Period));
        var minuteIds = new FormattedOnce<(string Pool, DateTimeOffset Minute)>(k => PoolMinute.IdOf(k.Pool, k.Minute));

        PooledDeployment? DeploymentOf(string id) => deployments.GetValueOrDefault(id) ?? knownDeployments.GetValueOrDefault(id);

        void Change(string poolId, int period, Func<PoolUtilization, PoolUtilization> change)
        {
            var id = monthIds.Of((poolId, period));
            changes[id] = change(changes.GetValueOrDefault(id) ?? PoolUtilization.Empty(poolId, period));
        }

        // The deployment's level in each pool is its share there while it holds PTUs: a change moves the difference.
        void Become(PooledDeployment before, PooledDeployment after, DateTimeOffset at)
        {
            deployments[after.Id] = after;
            var none = ImmutableDictionary<string, decimal>.Empty;
            var (was, now) = (before.HoldsPtus ? before.CountsIn : none, after.HoldsPtus ? after.CountsIn : none);
            foreach (var pool in was.Keys.Union(now.Keys).Order(StringComparer.Ordinal))
                if (now.GetValueOrDefault(pool) - was.GetValueOrDefault(pool) is var change and not 0)
                    Change(pool, BillingMonth.Of(at).Index, m => m.Deploy(change, at));
        }

        void Hold(string deploymentId, bool holds, DateTimeOffset at)
        {
            if (DeploymentOf(deploymentId) is { } d && d.HoldsPtus != holds) Become(d, d with { HoldsPtus = holds }, at);
        }

        void Buy(string deploymentId, decimal ptu, DateTimeOffset at)
        {
            if (DeploymentOf(deploymentId) is { } d && ptu != 0) Change(d.PoolId, BillingMonth.Of(at).Index, m => m.Buy(ptu, at));
        }

        void Use(UsageMetered usage)
        {
            var id = hourIds.Of(usage);
            var d = DeploymentOf(usage.DeploymentId);
            string? beforeBand = null; // none for an hour that had no usage before this
            if (hours.TryGetValue(id, out var hour)) beforeBand = UtilizationView.BandOf(hour.Utilization);
            else
            {
                var stored = knownHours.GetValueOrDefault(id);
                if (stored is not null) beforeBand = UtilizationView.BandOf(stored.Utilization);
                var start = stored ?? UsageHour.Empty(usage.DeploymentId, usage.LastFinishedAt);
                hours[id] = hour = new UsageHour.Tally(stored is null && d is not null ? start with { CountedIn = d.CountsIn } : start);
            }
            hour.Add(usage);
            if (d is null) return;
            // An hour stays counted in the pools it was first counted in, so a later band change takes back what was counted.
            var countedIn = hour.Before.CountedIn ?? ImmutableDictionary<string, decimal>.Empty.Add(d.PoolId, 1);
            var period = hour.Before.Period;
            var minute = PoolMinute.MinuteOf(usage.LastFinishedAt);
            foreach (var (pool, share) in d.CountsIn)
            {
                CollectionsMarshal.GetValueRefOrAddDefault(served, (pool, period), out _) += usage.WeightedTokens * share;
                CollectionsMarshal.GetValueRefOrAddDefault(servedByMinute, (pool, minute), out _) += usage.WeightedTokens * share;
            }
            if (UtilizationView.BandOf(hour.Utilization) is var afterBand && afterBand != beforeBand) MoveBand(countedIn, period, beforeBand, afterBand);
        }

        // Apart from Use, so that its lambda's captures are allocated only when a band changes, not for every usage entry.
        void MoveBand(ImmutableDictionary<string, decimal> countedIn, int period, string? from, string to)
        {
            foreach (var (pool, share) in countedIn)
                Change(pool, period, m => (from is null ? m : m.Count(from, -share)).Count(to, share));
        }

        foreach (var e in events)
        {
            switch (e)
            {
                case DeploymentCreated c:
                    var bought = CapacityPool.StreamId(c.Model, c.Region);
                    deployments[c.DeploymentId] = new PooledDeployment(c.DeploymentId, bought, false) { Pools = ImmutableDictionary<string, decimal>.Empty.Add(bought, 1) };
                    Hold(c.DeploymentId, c.Ptu > 0, c.CreatedAt);
                    Buy(c.DeploymentId, c.Ptu, c.CreatedAt);
                    break;
                case DeploymentPlaced p:
                    if (DeploymentOf(p.DeploymentId) is { } placed) Become(placed, placed with { Pools = placed.Weights(p.Shares) }, p.At);
                    break;
                case DeploymentResized r:
                    Hold(r.DeploymentId, r.ToPtu > 0, r.ResizedAt);
                    Buy(r.DeploymentId, r.ToPtu - r.FromPtu, r.ResizedAt);
                    break;
                case DeploymentReleased r:
                    Hold(r.DeploymentId, false, r.ReleasedAt);
                    Buy(r.DeploymentId, -r.Ptu, r.ReleasedAt);
                    break;
                case UsageBatchMetered b:
                    for (var i = 0; i < b.Usage.Count; i++) Use(b.Usage[i]);
                    break;
                case UsageMetered usage:
                    Use(usage);
                    break;
            }
        }
        foreach (var ((pool, period), tokens) in served) Change(pool, period, m => m with { Served = m.Served + tokens });
        var minutes = new Dictionary<string, PoolMinute>(StringComparer.Ordinal);
        foreach (var ((pool, minute), tokens) in servedByMinute)
        {
            var slot = minuteIds.Of((pool, minute));
            minutes[slot] = PoolMinute.Add(minutes.GetValueOrDefault(slot), pool, minute, tokens);
        }
        return new UtilizationPage(deployments, hours.ToDictionary(h => h.Key, h => h.Value.Summed, StringComparer.Ordinal), changes) { Minutes = minutes };
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
        [typeof(DeploymentCreated), typeof(DeploymentPlaced), typeof(DeploymentResized), typeof(DeploymentReleased), typeof(UsageBatchMetered), typeof(UsageMetered)];

    public async Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        var deploymentIds = new HashSet<string>(StringComparer.Ordinal);
        var hours = new HashSet<(string Deployment, long Hour)>(); // UTC ticks ÷ an hour
        foreach (var e in events)
        {
            switch (e.Data)
            {
                case DeploymentPlaced p: deploymentIds.Add(p.DeploymentId); break;
                case DeploymentResized r: deploymentIds.Add(r.DeploymentId); break;
                case DeploymentReleased r: deploymentIds.Add(r.DeploymentId); break;
                case UsageBatchMetered b:
                    for (var i = 0; i < b.Usage.Count; i++) Touch(b.Usage[i]);
                    break;
                case UsageMetered u: Touch(u); break;
            }
        }

        var known = await operations.LoadManyAsync<PooledDeployment>(cancellation, deploymentIds);
        var stored = await UsageHours.LoadAsync(operations, [.. hours.Select(h => (h.Deployment, new DateTimeOffset(h.Hour * TimeSpan.TicksPerHour, TimeSpan.Zero)))], cancellation);
        var page = UtilizationPage.Fold(events.Select(e => e.Data), known.ToDictionary(d => d.Id, StringComparer.Ordinal), stored);

        var months = (await operations.LoadManyAsync<PoolUtilization>(cancellation, page.Changes.Keys)).ToDictionary(m => m.Id, StringComparer.Ordinal);
        if (page.Changes.Count > 0) operations.Store(page.Changes.Values.Select(c => months.TryGetValue(c.Id, out var m) ? m.Plus(c) : c).ToArray());
        if (page.Deployments.Count > 0) operations.Store(page.Deployments.Values.ToArray());
        UsageHours.Write(operations, [.. page.Hours.Values]);
        if (page.Minutes.Count > 0)
        {
            var slots = (await operations.LoadManyAsync<PoolMinute>(cancellation, page.Minutes.Keys)).ToDictionary(m => m.Id, StringComparer.Ordinal);
            operations.Store(page.Minutes.Values.Select(m => PoolMinute.Add(slots.GetValueOrDefault(m.Id), m.PoolId, m.Minute, m.WeightedTokens)).ToArray());
        }
        return;

        void Touch(UsageMetered u)
        {
            deploymentIds.Add(u.DeploymentId);
            hours.Add((u.DeploymentId, u.LastFinishedAt.UtcTicks / TimeSpan.TicksPerHour));
        }
    }
}

/// <summary>
/// Ids a page's fold needs again and again, each formatted once: a page holds thousands of usage entries over a few
/// deployments, pools, hours and minutes, and formatting an id per entry was a tenth of the utilization fold.
/// </summary>
sealed class FormattedOnce<TKey>(Func<TKey, string> format) where TKey : notnull
{
    readonly Dictionary<TKey, string> _ids = new();

    public string Of(TKey key)
    {
        if (!_ids.TryGetValue(key, out var id)) _ids[key] = id = format(key);
        return id;
    }
}

/// <summary>Usage hour ids by deployment and hour (UTC ticks ÷ an hour), formatted once per page.</summary>
static class UsageHourIds
{
    public static FormattedOnce<(string Deployment, long Hour)> Create() =>
        new(k => UsageHour.IdOf(k.Deployment, new DateTimeOffset(k.Hour * TimeSpan.TicksPerHour, TimeSpan.Zero)));

    public static string Of(this FormattedOnce<(string Deployment, long Hour)> ids, UsageMetered usage) =>
        ids.Of((usage.DeploymentId, usage.LastFinishedAt.UtcTicks / TimeSpan.TicksPerHour));
}
