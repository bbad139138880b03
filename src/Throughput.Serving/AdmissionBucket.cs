using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// One deployment's local token bucket and the limit it follows. Holds up to <c>BurstTokens × burstShare</c> weighted
/// tokens and refills at <c>TokensPerMinute / 60</c> per second; an admission takes its estimate, a completion gives
/// back (estimate − actual). A throttle holds until the platform lifts it; past its retry-after plus the lapse time
/// without a lift or a confirmation, it lapses and the bucket refills from empty. One lock per deployment, so deployments
/// never contend with each other. A leased bucket (several serving processes share the deployment) holds and refills only
/// its lease's share of the rate and burst, nothing before its first lease.
/// </summary>
internal sealed class AdmissionBucket
{
    readonly Lock _gate = new();
    readonly TimeProvider _clock;
    readonly double _burstShare;
    readonly double _ticksPerMs;
    readonly long _lapseTicks;
    readonly bool _leased;

    AdmissionLimitChanged _limit;
    AdmissionLease? _lease;
    double _asked;
    double _admitted;
    int _admissions;
    double _tokens;
    long _refilledAt;
    double _tokensPerTick;
    double _capacity;
    double _outputWeight;
    double _cachedDeduction;
    long _throttledUntil;
    long _lapsesAt; // 0 unless throttled
    bool _lapsed;

    // The capped adapters of an adapter set asked about so far: weighted tokens each holds of its share of the rate and burst.
    Dictionary<string, (double Tokens, long RefilledAt)>? _caps;

    public AdmissionBucket(AdmissionLimitChanged limit, TimeProvider clock, double burstShare, TimeSpan throttleLapse, bool leased = false)
    {
        _clock = clock;
        _leased = leased;
        _burstShare = burstShare;
        _ticksPerMs = clock.TimestampFrequency / 1000d;
        _lapseTicks = (long)(throttleLapse.TotalMilliseconds * _ticksPerMs);
        _limit = limit;
        _refilledAt = clock.GetTimestamp();
        _tokens = double.MaxValue; // capped to the platform's headroom by Follow
        Follow(limit, _refilledAt);
    }

    public AdmissionLimitChanged Limit
    {
        get
        {
            lock (_gate) return _limit;
        }
    }

    public LimitUpdate Apply(AdmissionLimitChanged limit)
    {
        lock (_gate)
        {
            var now = _clock.GetTimestamp();
            if (limit.Version <= _limit.Version)
            {
                if (limit.Version == _limit.Version && limit.State == AdmissionState.Throttled) Confirm(limit, now);
                return LimitUpdate.Stale;
            }
            var gap = limit.Version > _limit.Version + 1;
            LapseIfDue(now);
            Refill(now);
            Follow(limit, now);
            return gap ? LimitUpdate.AppliedAfterGap : LimitUpdate.Applied;
        }
    }

    /// <summary>Takes the limit whatever its version: the platform's answer to a pull replaces one it does not stand behind.</summary>
    public void Overrule(AdmissionLimitChanged limit)
    {
        lock (_gate)
        {
            var now = _clock.GetTimestamp();
            LapseIfDue(now);
            Refill(now);
            Follow(limit, now);
        }
    }

    public Admission TryAdmit(long promptTokens, long cachedTokens, long maxOutputTokens, string? adapterId = null)
    {
        lock (_gate)
        {
            var estimate = Estimate(promptTokens, cachedTokens, maxOutputTokens);
            _asked += estimate;
            var now = _clock.GetTimestamp();
            LapseIfDue(now);
            switch (_lapsed ? AdmissionState.Open : _limit.State)
            {
                case AdmissionState.Open:
                case AdmissionState.Degraded:
                    Refill(now);
                    var share = CapOf(adapterId);
                    var capped = share > 0 ? RefillCap(adapterId!, share, now) : 0;
                    // A request larger than the whole bucket goes when the bucket is full and leaves it in debt, so it is slowed, never starved.
                    if (_tokensPerTick > 0 && (_tokens >= estimate || _tokens >= _capacity) && (share == 0 || capped >= estimate || capped >= share * _capacity))
                    {
                        _tokens -= estimate;
                        _admitted += estimate;
                        _admissions++;
                        if (share > 0) _caps![adapterId!] = (capped - estimate, now);
                        return new Admission(AdmissionOutcome.Admitted, estimate, 0, this, share > 0 ? adapterId : null);
                    }
                    var wait = share > 0 ? Math.Max(MsUntilHeld(Math.Min(estimate, _capacity)), MsUntilCapHeld(capped, share, Math.Min(estimate, share * _capacity)))
                        : MsUntilHeld(Math.Min(estimate, _capacity));
                    return _limit.Spillover
                        ? new Admission(AdmissionOutcome.Spilled, estimate, 0, this)
                        : new Admission(AdmissionOutcome.OverRate, estimate, wait, this);
                case AdmissionState.Throttled:
                    if (_limit.Spillover) return new Admission(AdmissionOutcome.Spilled, estimate, 0, this);
                    var left = (_throttledUntil - now) / _ticksPerMs;
                    // Past the platform's retry-after but not lifted yet: the lift is on its way (or a pull will fetch it), or the throttle lapses.
                    return new Admission(AdmissionOutcome.Throttled, estimate,
                        left > 0 ? (long)Math.Ceiling(left) : Math.Min(StillThrottledRetryMs, (long)Math.Ceiling((_lapsesAt - now) / _ticksPerMs)), this);
                case AdmissionState.Suspended:
                    return new Admission(AdmissionOutcome.Suspended, estimate, 0, this);
                default:
                    return new Admission(AdmissionOutcome.Released, estimate, 0, this);
            }
        }
    }

    /// <summary>Gives back what the estimate took beyond the actual cost (or takes the shortfall), capped at the capacity.</summary>
    public void Reconcile(long estimate, long promptTokens, long cachedTokens, long outputTokens, string? adapterId = null)
    {
        lock (_gate)
        {
            var actual = Weighted(promptTokens, cachedTokens, outputTokens);
            _tokens = Math.Min(_capacity, _tokens + (estimate - actual));
            if (adapterId is not null && _caps is not null && _caps.TryGetValue(adapterId, out var cap))
                _caps[adapterId] = (Math.Min(CapOf(adapterId) * _capacity, cap.Tokens + (estimate - actual)), cap.RefilledAt);
        }
    }

    /// <summary>An adapter's cap as a share of the rate and burst (0 when it has none): a tenant's limit on one adapter of a set.</summary>
    double CapOf(string? adapterId) =>
        adapterId is not null && _limit.AdapterCaps is { } caps && caps.TryGetValue(adapterId, out var share) ? (double)share : 0;

    /// <summary>
    /// The tokens a capped adapter holds now: its share of the bucket's rate (so of the lease's, when leased) refills it, up to
    /// its share of the capacity; it starts full, as a new deployment's bucket does. Not filled while the deployment is throttled.
    /// </summary>
    double RefillCap(string adapterId, double share, long now)
    {
        _caps ??= new(StringComparer.Ordinal);
        var capacity = share * _capacity;
        if (!_caps.TryGetValue(adapterId, out var cap)) return capacity;
        return Math.Min(capacity, cap.Tokens + Math.Max(0, now - cap.RefilledAt) * share * _tokensPerTick);
    }

    long MsUntilCapHeld(double held, double share, double tokens)
    {
        if (_tokensPerTick <= 0) return _leased ? NoShareRetryMs : 60_000;
        return Math.Max(1, (long)Math.Ceiling((tokens - held) / (share * _tokensPerTick) / _ticksPerMs));
    }

    public AdmissionBucketView View()
    {
        lock (_gate)
        {
            var now = _clock.GetTimestamp();
            LapseIfDue(now);
            Refill(now);
            return new AdmissionBucketView(_limit, _tokens, _capacity, _capacity <= 0 ? 0 : 1 - _tokens / _capacity, _lease);
        }
    }

    /// <summary>A throttled deployment still throttled after its retry-after has passed (its lift may have been missed).</summary>
    public bool ThrottledPastRetry()
    {
        lock (_gate) return _limit.State == AdmissionState.Throttled && _clock.GetTimestamp() >= _throttledUntil;
    }

    public AdmissionLease? Lease
    {
        get
        {
            lock (_gate) return _lease;
        }
    }

    /// <summary>
    /// Takes a newer lease's share of the rate and burst. The tokens held stay, capped at the new capacity; only the first
    /// lease of a replica alone on the deployment fills the bucket, so the opening burst is one burst however many replicas open
    /// (a lease of nothing does not count: a lease owner that has just taken over grants nothing to a replica holding nothing).
    /// </summary>
    public bool Apply(AdmissionLease lease)
    {
        lock (_gate)
        {
            if (!_leased || (_lease is not null && lease.Version <= _lease.Version)) return false;
            var now = _clock.GetTimestamp();
            LapseIfDue(now);
            Refill(now);
            var first = _lease is null || _lease.TokensPerMinute == 0;
            _lease = lease;
            Size();
            _tokens = first && lease.Replicas == 1 ? Math.Min(_capacity, Headroom(_limit)) : Math.Min(_tokens, _capacity);
            return true;
        }
    }

    /// <summary>The deployment is no longer renewed here (no demand for a while): nothing is admitted until a new lease comes.</summary>
    public void DropLease()
    {
        lock (_gate)
        {
            var now = _clock.GetTimestamp();
            Refill(now);
            _lease = null;
            Size();
            _tokens = Math.Min(_tokens, _capacity);
        }
    }

    /// <summary>
    /// Since the last call: weighted tokens asked for (admitted or not), and those admitted with how many requests. What a
    /// lease renewal makes its demand of.
    /// </summary>
    public (double Asked, double Admitted, int Admissions) TakeDemand()
    {
        lock (_gate)
        {
            var taken = (_asked, _admitted, _admissions);
            (_asked, _admitted, _admissions) = (0, 0, 0);
            return taken;
        }
    }

    const long StillThrottledRetryMs = 1000;

    // A leased bucket asks again at about the next renewal at the latest (with no share yet: not in a minute).
    const long NoShareRetryMs = 250;

    long Estimate(long promptTokens, long cachedTokens, long maxOutputTokens) =>
        (long)Math.Ceiling(Weighted(promptTokens, cachedTokens, maxOutputTokens));

    double Weighted(long promptTokens, long cachedTokens, long outputTokens) =>
        Math.Max(0, promptTokens - cachedTokens * _cachedDeduction) + _outputWeight * outputTokens;

    // While throttled the bucket does not fill: the platform's own bucket is draining, and that drain is what earns admission again.
    void Refill(long now)
    {
        if (now <= _refilledAt) return;
        if (_limit.State is AdmissionState.Open or AdmissionState.Degraded || _lapsed)
            _tokens = Math.Min(_capacity, _tokens + (now - _refilledAt) * _tokensPerTick);
        _refilledAt = now;
    }

    /// <summary>
    /// A throttle neither lifted nor confirmed well past its retry-after means the platform is out of reach: its bucket has
    /// drained meanwhile (unless other nodes kept filling it), so admission resumes at the purchased rate from an empty bucket
    /// rather than not at all for as long as the outage lasts.
    /// </summary>
    void LapseIfDue(long now)
    {
        if (_lapsed || _lapsesAt == 0 || now < _lapsesAt) return;
        Refill(_lapsesAt);
        _lapsed = true;
        _tokens = Math.Min(_tokens, 0);
    }

    /// <summary>The platform still holds the throttle (a pull past the retry-after answered with it): wait its new retry-after.</summary>
    void Confirm(AdmissionLimitChanged limit, long now)
    {
        if (_limit.State != AdmissionState.Throttled) return;
        LapseIfDue(now);
        Refill(now);
        _lapsed = false;
        _throttledUntil = now + (long)(limit.RetryAfterMs * _ticksPerMs);
        _lapsesAt = _throttledUntil + _lapseTicks;
    }

    /// <summary>
    /// Takes a new limit's rate and capacity at once. The tokens already held stay (a resize changes the rate, it does not
    /// grant a burst), but never exceed the platform's headroom: the capacity minus the level the platform has metered.
    /// </summary>
    void Follow(AdmissionLimitChanged limit, long now)
    {
        _limit = limit;
        Size();
        _outputWeight = (double)limit.OutputWeight;
        _cachedDeduction = (double)limit.CachedDeduction;
        _tokens = Math.Min(_tokens, Math.Min(_capacity, Headroom(limit)));
        _throttledUntil = limit.State == AdmissionState.Throttled ? now + (long)(limit.RetryAfterMs * _ticksPerMs) : 0;
        _lapsesAt = limit.State == AdmissionState.Throttled ? _throttledUntil + _lapseTicks : 0;
        _lapsed = false;
    }

    /// <summary>The rate and capacity: the limit's, or the lease's share of it (never more than the limit, which a resize may have cut first).</summary>
    void Size()
    {
        var rate = _leased ? Math.Min(_lease?.TokensPerMinute ?? 0, _limit.TokensPerMinute) : _limit.TokensPerMinute;
        var burst = _leased ? Math.Min(_lease?.BurstTokens ?? 0, _limit.BurstTokens) : _limit.BurstTokens;
        _tokensPerTick = rate / 60d / _clock.TimestampFrequency;
        _capacity = burst * _burstShare;
    }

    /// <summary>This bucket's part of the platform's headroom: its capacity minus its share of the level the platform has metered.</summary>
    double Headroom(AdmissionLimitChanged limit) =>
        _capacity - (double)limit.Utilization * limit.BurstTokens * (limit.BurstTokens == 0 ? 0 : _capacity / _burstShare / limit.BurstTokens);

    long MsUntilHeld(double tokens)
    {
        if (_tokensPerTick <= 0) return _leased ? NoShareRetryMs : 60_000;
        var ms = Math.Max(1, (long)Math.Ceiling((tokens - _tokens) / _tokensPerTick / _ticksPerMs));
        // A share can grow at any renewal, and a caller that waits out the refill of a small share would ask no faster
        // than that share allows, so its demand would never say it wants more: it asks again at about the next renewal.
        return _leased ? Math.Min(ms, NoShareRetryMs) : ms;
    }
}

/// <summary>A deployment's local bucket at one moment: weighted tokens it holds now (negative while in debt), its capacity, and how full it is of admitted work (1 = nothing left to admit).</summary>
/// <param name="Lease">The share of the deployment this node holds, when it takes leases.</param>
public sealed record AdmissionBucketView(AdmissionLimitChanged Limit, double Tokens, double Capacity, double Utilization, AdmissionLease? Lease = null);
