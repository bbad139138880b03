using System.Diagnostics;
using System.Net.Http.Json;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// Renews this process's leases for the deployments it is asked to admit: every renew interval it reports, per deployment,
/// the weighted tokens per minute asked of its buckets (smoothed over about a second) and applies the shares the platform
/// answers. A deployment not asked about for <see cref="Idle"/> is no longer renewed; its lease lapses on the platform and
/// its share goes to the other replicas. Stopping gives every lease back at once.
/// </summary>
sealed class LeaseRenewer(AdmissionCache cache, HttpClient platform, AdmissionFeedOptions options)
{
    static readonly TimeSpan Idle = TimeSpan.FromMinutes(1);

    static readonly Uri Leases = new("/v1/admission/leases", UriKind.Relative);

    // Each report weighs the last interval as much as everything before it: about a second of memory at 250 ms.
    const double Smoothing = 0.5;

    readonly Dictionary<string, (double TokensPerMinute, long AskedAt)> _demands = new(StringComparer.Ordinal);
    long _renewals;

    public long Renewals => Interlocked.Read(ref _renewals);

    /// <summary>This process's producer id as the platform names its leases (learned from the first answer); null before it.</summary>
    public string? ReplicaId { get; private set; }

    public async Task RunAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(options.LeaseRenewInterval);
        var last = Stopwatch.GetTimestamp();
        while (await timer.WaitForNextTickAsync(stopping))
        {
            var now = Stopwatch.GetTimestamp();
            var minutes = Stopwatch.GetElapsedTime(last, now).TotalMinutes;
            last = now;
            var demands = Demands(now, minutes);
            if (demands.Count == 0) continue;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                timeout.CancelAfter(options.PullTimeout);
                using var response = await platform.PostAsJsonAsync(Leases, new AdmissionLeaseRenewal(demands), AdmissionJson.Default.AdmissionLeaseRenewal, timeout.Token);
                response.EnsureSuccessStatusCode();
                foreach (var lease in await response.Content.ReadFromJsonAsync(AdmissionJson.Default.AdmissionLeaseArray, timeout.Token) ?? [])
                {
                    ReplicaId ??= lease.ReplicaId;
                    cache.Apply(lease);
                }
                Interlocked.Increment(ref _renewals);
            }
            catch (Exception e) when (!stopping.IsCancellationRequested)
            {
                options.Failed?.Invoke(e); // the leases held keep serving until the next renewal gets through
            }
        }
    }

    /// <summary>Gives every lease back, so the other replicas get the shares at their next renewal rather than after the TTL.</summary>
    public async Task ReleaseAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            using var response = await platform.DeleteAsync(Leases, timeout.Token);
        }
        catch (Exception e)
        {
            options.Failed?.Invoke(e); // they expire after the TTL anyway
        }
    }

    List<AdmissionDemand> Demands(long now, double minutes)
    {
        var demands = new List<AdmissionDemand>();
        foreach (var (deploymentId, bucket) in cache.Buckets)
        {
            var asked = bucket.TakeDemand();
            var perMinute = minutes <= 0 ? 0 : asked / minutes;
            if (!_demands.TryGetValue(deploymentId, out var demand))
            {
                if (asked <= 0) continue;
                demand = (perMinute, now);
            }
            demand = (Smoothing * perMinute + (1 - Smoothing) * demand.TokensPerMinute, asked > 0 ? now : demand.AskedAt);
            if (Stopwatch.GetElapsedTime(demand.AskedAt, now) >= Idle)
            {
                _demands.Remove(deploymentId);
                bucket.DropLease();
                continue;
            }
            _demands[deploymentId] = demand;
            demands.Add(new AdmissionDemand(deploymentId, (long)Math.Ceiling(demand.TokensPerMinute)));
        }
        return demands;
    }
}
