using System.Diagnostics;
using System.Net.Http.Json;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// Renews this process's leases for the deployments it is asked to admit: every renew interval it reports, per deployment,
/// its <see cref="DemandEstimate"/> and applies the shares the platform answers. A deployment not asked about for <see cref="Idle"/> is no longer renewed; its lease lapses on the platform and
/// its share goes to the other replicas. Stopping gives every lease back at once.
/// </summary>
sealed class LeaseRenewer(AdmissionCache cache, HttpClient platform, AdmissionFeedOptions options)
{
    static readonly TimeSpan Idle = TimeSpan.FromMinutes(1);

    static readonly Uri Leases = new("/v1/admission/leases", UriKind.Relative);

    readonly Dictionary<string, DemandEstimate> _demands = new(StringComparer.Ordinal);
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
            var taken = bucket.TakeDemand();
            if (!_demands.TryGetValue(deploymentId, out var demand))
            {
                if (taken.Asked <= 0) continue;
                _demands[deploymentId] = demand = new DemandEstimate(now);
            }
            var held = bucket.Lease;
            var tokensPerMinute = demand.Add(taken, minutes, now, held?.TokensPerMinute ?? 0);
            if (Stopwatch.GetElapsedTime(demand.AskedAt, now) >= Idle)
            {
                _demands.Remove(deploymentId);
                bucket.DropLease();
                continue;
            }
            // What it holds, so that a lease owner that has just taken over keeps it rather than starting from nothing.
            demands.Add(new AdmissionDemand(deploymentId, (long)Math.Ceiling(tokensPerMinute), held?.TokensPerMinute ?? 0, held?.BurstTokens ?? 0, held?.Version ?? 0));
        }
        return demands;
    }
}

/// <summary>
/// One deployment's demand as a renewal reports it, in weighted tokens per minute. A process that refused nothing over the
/// last interval reports what it admitted, over the shortest recent window holding <see cref="Requests"/> admissions (up to
/// <see cref="Intervals"/> intervals): a busy process answers within one interval, and one admitting a request a second is
/// not read as 0 or 12,000 a minute by turns, which would swing its share every renewal and cut the tokens it holds. A process
/// that refused reports what it was asked (smoothed over about a second, retries included): more than its share, which is
/// all the platform needs to know — and at least twice the share it holds: a caller honouring the retry-after asks about as
/// fast as its share refills, so what it asks would otherwise say no more than what it already has, and its share would
/// never grow to its fair one (max-min fairness caps what it gets, so asking for more is harmless). Admissions made while
/// it refused measure its share, not its demand: once it stops refusing (its queue drained), the window reaches back at
/// most <see cref="SinceRefusal"/> intervals, or to the last refusal, so the share it no longer uses goes to the others
/// within about a second rather than after eight of its admissions. For <see cref="HoldAfterRefusal"/> after a refusal it is
/// not read as wanting less than it holds: the few admissions since are too few to measure a slow process (one request
/// more or less in a second is 3,000 a minute), a low reading would shrink its share below its load and its bucket, empty
/// from refusing, would refuse again; what it holds beyond its use meanwhile refills that bucket instead. Two seconds is
/// the time an unused share has to move.
/// </summary>
sealed class DemandEstimate(long now)
{
    public const int Requests = 8;
    public const int Intervals = 32;

    /// <summary>How far (intervals) the admitted window always may reach back, even past a refusal: a second.</summary>
    public const int SinceRefusal = 4;

    /// <summary>For how many intervals after its last refusal the report is at least the share held: until 2 s have passed.</summary>
    public const int HoldAfterRefusal = 8;

    // The asked figure weighs the last interval as much as everything before it: about a second of memory at 250 ms.
    const double Smoothing = 0.5;

    readonly (double Tokens, int Admissions, double Minutes)[] _admitted = new (double, int, double)[Intervals];
    int _next;
    int _sinceRefusal = Intervals;
    double _asked;

    /// <summary>When the deployment was last asked for anything.</summary>
    public long AskedAt { get; private set; } = now;

    public double Add((double Asked, double Admitted, int Admissions) taken, double minutes, long now, long heldTokensPerMinute = 0)
    {
        if (taken.Asked > 0) AskedAt = now;
        _asked = Smoothing * (minutes <= 0 ? 0 : taken.Asked / minutes) + (1 - Smoothing) * _asked;
        _admitted[_next] = (taken.Admitted, taken.Admissions, minutes);
        _next = (_next + 1) % Intervals;
        if (taken.Asked > taken.Admitted)
        {
            _sinceRefusal = 0;
            return Math.Max(Math.Max(_asked, Admitted()), 2.0 * heldTokensPerMinute);
        }
        _sinceRefusal = Math.Min(Intervals, _sinceRefusal + 1);
        return _sinceRefusal < HoldAfterRefusal ? Math.Max(Admitted(), heldTokensPerMinute) : Admitted();
    }

    double Admitted()
    {
        double tokens = 0, minutes = 0;
        var admissions = 0;
        var reach = Math.Max(SinceRefusal, _sinceRefusal);
        for (var i = 1; i <= reach && admissions < Requests; i++)
        {
            var interval = _admitted[(_next - i + Intervals) % Intervals];
            // The window stops at the interval holding its oldest admission, which fell anywhere in it: counted whole, the
            // window would read high (by ~4 % at a request every 0.7 s, all of it share held and unused). Its admission
            // counts as half, and its interval from the middle.
            var oldest = i > 1 && interval.Admissions > 0 && interval.Admissions == Requests - admissions;
            tokens += oldest ? interval.Tokens * (interval.Admissions - 0.5) / interval.Admissions : interval.Tokens;
            admissions += interval.Admissions;
            minutes += oldest ? interval.Minutes / 2 : interval.Minutes;
        }
        return minutes <= 0 ? 0 : tokens / minutes;
    }
}
