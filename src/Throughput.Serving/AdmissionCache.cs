using System.Collections.Concurrent;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>How a serving node admits locally.</summary>
public sealed record AdmissionCacheOptions
{
    /// <summary>
    /// The share of the platform's burst the local bucket holds. Below 1 on purpose: the platform throttles when its metered
    /// bucket reaches 100%, and a node admitting the whole burst keeps a backlogged deployment at exactly 100% there, so it
    /// would flap between throttled and open. 0.9 leaves six seconds of rate as margin for estimates and metering lag.
    /// </summary>
    public double BurstShare { get; init; } = 0.9;

    /// <summary>
    /// How long past its retry-after a throttle waits for the platform to lift or confirm it before it lapses. The feed asks
    /// the platform about such a throttle every second; when nobody answers (the platform is down), the deployment admits at
    /// its purchased rate again, from an empty bucket, instead of serving nothing for as long as the outage lasts.
    /// </summary>
    public TimeSpan ThrottleLapse { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Several serving processes serve the same deployments: each bucket admits only within the lease its process holds on
    /// the deployment (its share of the rate and burst, sized by its demand), nothing before its first lease. The
    /// <see cref="AdmissionFeed"/> renews the leases of the deployments asked about. Off: every bucket follows the whole limit.
    /// </summary>
    public bool Leases { get; init; }

    /// <summary>The time source of the buckets (tests pass a manual one).</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>Called after every limit offered to the cache, with what it did; on the caller's thread, keep it cheap.</summary>
    public Action<AdmissionLimitChanged, LimitUpdate>? LimitApplied { get; init; }

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Clock);
        if (!(BurstShare is > 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(BurstShare), BurstShare, "Between 0 (excluded) and 1.");
        ArgumentOutOfRangeException.ThrowIfLessThan(ThrottleLapse, TimeSpan.Zero);
    }
}

/// <summary>
/// A serving node's view of its deployments' admission limits, and the in-process decision to admit a request.
/// Each deployment has a local token bucket (see <see cref="AdmissionBucket"/>), so admitting costs a dictionary lookup
/// and a short lock, no I/O. Limits come in through <see cref="Apply"/> (an <see cref="AdmissionFeed"/> keeps them current);
/// a limit only replaces an older version. With no feed, or the platform out of reach, the last known limits keep serving;
/// a throttle the platform can no longer be asked about lapses a little after its retry-after (<see cref="AdmissionCacheOptions.ThrottleLapse"/>).
/// Thread-safe.
/// </summary>
public sealed class AdmissionCache
{
    readonly ConcurrentDictionary<string, AdmissionBucket> _buckets = new(StringComparer.Ordinal);
    readonly AdmissionCacheOptions _options;

    public AdmissionCache(AdmissionCacheOptions? options = null)
    {
        _options = options ?? new AdmissionCacheOptions();
        _options.Validate();
    }

    /// <summary>Deployments the cache has a limit for.</summary>
    public int Count => _buckets.Count;

    /// <summary>Takes a limit if it is newer than the one held for its deployment; older or equal versions are ignored.</summary>
    public LimitUpdate Apply(AdmissionLimitChanged limit)
    {
        ArgumentNullException.ThrowIfNull(limit);
        ArgumentException.ThrowIfNullOrEmpty(limit.DeploymentId, nameof(limit));
        LimitUpdate update;
        if (_buckets.TryGetValue(limit.DeploymentId, out var bucket))
        {
            update = bucket.Apply(limit);
        }
        else
        {
            var added = NewBucket(limit);
            // The first limit seen is a full snapshot: there is nothing older to have missed.
            update = _buckets.TryAdd(limit.DeploymentId, added) ? LimitUpdate.Applied : _buckets[limit.DeploymentId].Apply(limit);
        }
        _options.LimitApplied?.Invoke(limit, update);
        return update;
    }

    /// <summary>Replaces a deployment's limit whatever the versions: for what the platform answered to a pull (see <see cref="LimitUpdate.Overruled"/>).</summary>
    internal void Overrule(AdmissionLimitChanged limit)
    {
        if (_buckets.TryGetValue(limit.DeploymentId, out var bucket)) bucket.Overrule(limit);
        else _buckets.TryAdd(limit.DeploymentId, NewBucket(limit));
        _options.LimitApplied?.Invoke(limit, LimitUpdate.Overruled);
    }

    /// <summary>
    /// Decides on a request now. Its cost is estimated as (prompt − cached × cached deduction) + output weight × max output
    /// tokens. Open: admitted if the bucket holds the estimate, else refused with the time until it will (or spilled, when the
    /// deployment has spillover). Throttled: refused until the platform lifts it (or spilled). Suspended, released, unknown: refused.
    /// </summary>
    public Admission TryAdmit(string deploymentId, long promptTokens, long cachedTokens, long maxOutputTokens) =>
        TryAdmit(deploymentId, null, promptTokens, cachedTokens, maxOutputTokens);

    /// <summary>
    /// Decides on a request for one adapter of an adapter set (or of an adapter deployment). An adapter the set caps
    /// (<see cref="AdmissionLimitChanged.AdapterCaps"/>) is admitted only while both its own share and the set's bucket hold
    /// the estimate: one adapter cannot use more than its share of the rate, and all of them together no more than the rate.
    /// </summary>
    public Admission TryAdmit(string deploymentId, string? adapterId, long promptTokens, long cachedTokens, long maxOutputTokens) =>
        _buckets.TryGetValue(deploymentId, out var bucket)
            ? bucket.TryAdmit(promptTokens, cachedTokens, maxOutputTokens, adapterId)
            : new Admission(AdmissionOutcome.UnknownDeployment, 0, 0, null);

    /// <summary>A request admitted within the rate has finished: the bucket gets back its estimate minus its actual weighted cost.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822", Justification = "A ticket is completed on the cache that issued it; static would hide that.")]
    public void Complete(in Admission admission, long promptTokens, long cachedTokens, long outputTokens)
    {
        if (admission.Outcome == AdmissionOutcome.Admitted)
            admission.Bucket!.Reconcile(admission.EstimatedTokens, promptTokens, cachedTokens, outputTokens, admission.CappedAdapter);
    }

    /// <summary>The limit held for a deployment, or null.</summary>
    public AdmissionLimitChanged? Limit(string deploymentId) =>
        _buckets.TryGetValue(deploymentId, out var bucket) ? bucket.Limit : null;

    /// <summary>Every limit held, in no particular order.</summary>
    public IReadOnlyList<AdmissionLimitChanged> Limits() => [.. _buckets.Values.Select(b => b.Limit)];

    /// <summary>A deployment's local bucket now, or null when no limit is known.</summary>
    public AdmissionBucketView? Bucket(string deploymentId) =>
        _buckets.TryGetValue(deploymentId, out var bucket) ? bucket.View() : null;

    /// <summary>Whether buckets admit within leases (<see cref="AdmissionCacheOptions.Leases"/>).</summary>
    public bool Leases => _options.Leases;

    /// <summary>Takes a lease if it is newer than the one held for its deployment; false when older, or when no limit is known for it.</summary>
    public bool Apply(AdmissionLease lease)
    {
        ArgumentNullException.ThrowIfNull(lease);
        return _buckets.TryGetValue(lease.DeploymentId, out var bucket) && bucket.Apply(lease);
    }

    /// <summary>The lease held on a deployment, or null.</summary>
    public AdmissionLease? Lease(string deploymentId) =>
        _buckets.TryGetValue(deploymentId, out var bucket) ? bucket.Lease : null;

    internal IEnumerable<KeyValuePair<string, AdmissionBucket>> Buckets => _buckets;

    AdmissionBucket NewBucket(AdmissionLimitChanged limit) => new(limit, _options.Clock, _options.BurstShare, _options.ThrottleLapse, _options.Leases);

    /// <summary>Throttled deployments whose retry-after has passed without a lift: worth asking the platform about.</summary>
    internal List<string> ThrottledPastRetry() =>
        [.. _buckets.Where(pair => pair.Value.ThrottledPastRetry()).Select(pair => pair.Key)];
}
