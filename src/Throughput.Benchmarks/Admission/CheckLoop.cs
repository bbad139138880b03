using System.Diagnostics;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Benchmarks.Admission;

/// <summary>What a set of threads reached calling TryAdmit + Complete: checks (one TryAdmit and its Complete) and the bytes they allocated.</summary>
public sealed record CheckRun(int Threads, long Checks, long Admitted, long AllocatedBytes, TimeSpan Elapsed)
{
    public double PerSecond => Checks / Elapsed.TotalSeconds;

    public double BytesPerCheck => Checks == 0 ? 0 : (double)AllocatedBytes / Checks;

    public double NanosecondsPerCheckPerThread => Elapsed.TotalMilliseconds * 1e6 * Threads / Math.Max(1, Checks);
}

/// <summary>
/// A serving node's admission hot path in a loop: dedicated threads each walk the deployments round-robin from their own
/// offset, admit a request and complete it at its estimate, so the buckets never run dry and every check takes the
/// admitting branch (the one a healthy node runs most).
/// </summary>
public static class CheckLoop
{
    const int ClockEvery = 4096; // checks between looks at the clock and the stop flag

    /// <summary>Limits so large that nothing the loop does empties a bucket; leased: each bucket holds a lease on the whole limit.</summary>
    public static AdmissionCache CacheWith(int deployments, bool leased = false)
    {
        const long Rate = 370_000_000;
        var cache = new AdmissionCache(new AdmissionCacheOptions { Leases = leased });
        for (var i = 0; i < deployments; i++)
        {
            cache.Apply(new AdmissionLimitChanged($"dep-{i:D5}", "bench-tenant", "gpt-4o-mini", "bench-region", AdmissionState.Open,
                TokensPerMinute: Rate, BurstTokens: Rate, Utilization: 0, RetryAfterMs: 0, Spillover: false,
                OutputWeight: 4, CachedDeduction: 1, Version: 1, ChangedAt: DateTimeOffset.UtcNow));
            if (leased) cache.Apply(new AdmissionLease($"dep-{i:D5}", "bench-node", Rate, Rate, Rate, Replicas: 1, Version: 1, DateTimeOffset.MaxValue));
        }
        return cache;
    }

    public static CheckRun Run(AdmissionCache cache, IReadOnlyList<string> deployments, int threads, TimeSpan duration)
    {
        var results = new (long Checks, long Admitted, long Bytes)[threads];
        using var start = new Barrier(threads + 1);
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            results[t] = Spin(cache, deployments, t * deployments.Count / threads, duration);
        }) { IsBackground = true, Name = $"admission-check-{t}" }).ToList();
        workers.ForEach(w => w.Start());
        var started = Stopwatch.GetTimestamp();
        start.SignalAndWait();
        workers.ForEach(w => w.Join());
        var elapsed = Stopwatch.GetElapsedTime(started);
        return new CheckRun(threads, results.Sum(r => r.Checks), results.Sum(r => r.Admitted), results.Sum(r => r.Bytes), elapsed);
    }

    static (long Checks, long Admitted, long Bytes) Spin(AdmissionCache cache, IReadOnlyList<string> deployments, int offset, TimeSpan duration)
    {
        var ids = deployments.ToArray();
        var next = offset % ids.Length;
        long checks = 0, admitted = 0;
        var deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        do
        {
            for (var i = 0; i < ClockEvery; i++)
            {
                var admission = cache.TryAdmit(ids[next], 1_000, 200, 250);
                if (admission.Outcome == AdmissionOutcome.Admitted) admitted++;
                cache.Complete(admission, 1_000, 200, 250);
                next = next + 1 == ids.Length ? 0 : next + 1;
            }
            checks += ClockEvery;
        }
        while (Stopwatch.GetTimestamp() < deadline);
        return (checks, admitted, GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
    }
}
