namespace Throughput.Serving;

/// <summary>What <see cref="AdmissionCache.TryAdmit"/> decided for one request.</summary>
public enum AdmissionOutcome
{
    /// <summary>Admitted within the purchased rate; its estimate was taken from the deployment's bucket.</summary>
    Admitted,

    /// <summary>Admitted on the spillover deployment (billed per token); the bucket was not touched.</summary>
    Spilled,

    /// <summary>The bucket does not hold the estimate yet: retry after <see cref="Admission.RetryAfterMs"/>.</summary>
    OverRate,

    /// <summary>The platform throttled the deployment: retry after <see cref="Admission.RetryAfterMs"/>.</summary>
    Throttled,

    /// <summary>The tenant is suspended.</summary>
    Suspended,

    /// <summary>The deployment was released.</summary>
    Released,

    /// <summary>No limit is known for the deployment (not in this node's scope, or not pulled yet).</summary>
    UnknownDeployment,
}

/// <summary>
/// The ticket for one admission decision. Pass an admitted one to <see cref="AdmissionCache.Complete"/> when the request
/// has finished, so the bucket is corrected by the difference between estimate and actual. A struct: deciding allocates nothing.
/// </summary>
public readonly struct Admission : IEquatable<Admission>
{
    internal Admission(AdmissionOutcome outcome, long estimatedTokens, long retryAfterMs, AdmissionBucket? bucket, string? cappedAdapter = null)
    {
        Outcome = outcome;
        EstimatedTokens = estimatedTokens;
        RetryAfterMs = retryAfterMs;
        Bucket = bucket;
        CappedAdapter = cappedAdapter;
    }

    public AdmissionOutcome Outcome { get; }

    /// <summary>The weighted cost the request was estimated at: (prompt − cached × deduction) + output weight × max output tokens.</summary>
    public long EstimatedTokens { get; }

    /// <summary>When refused: how long until asking again can succeed (the <c>retry-after-ms</c> a gateway would answer). 0 when admitted.</summary>
    public long RetryAfterMs { get; }

    internal AdmissionBucket? Bucket { get; }

    /// <summary>The capped adapter of an adapter set whose share the estimate was also taken from, to be reconciled with it.</summary>
    internal string? CappedAdapter { get; }

    public bool IsAdmitted => Outcome is AdmissionOutcome.Admitted or AdmissionOutcome.Spilled;

    public bool IsSpilled => Outcome == AdmissionOutcome.Spilled;

    public bool Equals(Admission other) =>
        Outcome == other.Outcome && EstimatedTokens == other.EstimatedTokens && RetryAfterMs == other.RetryAfterMs && ReferenceEquals(Bucket, other.Bucket);

    public override bool Equals(object? obj) => obj is Admission other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Outcome, EstimatedTokens, RetryAfterMs);

    public static bool operator ==(Admission left, Admission right) => left.Equals(right);

    public static bool operator !=(Admission left, Admission right) => !left.Equals(right);

    public override string ToString() => $"{Outcome} (estimate {EstimatedTokens}, retry after {RetryAfterMs} ms)";
}

/// <summary>What applying a limit did.</summary>
public enum LimitUpdate
{
    /// <summary>Newer than what the cache held (or the first seen for the deployment): applied.</summary>
    Applied,

    /// <summary>Applied, but its version skipped one or more: changes were missed or coalesced, so pull the deployment to be sure.</summary>
    AppliedAfterGap,

    /// <summary>Not newer than what the cache holds: ignored.</summary>
    Stale,

    /// <summary>
    /// A pull answered an older version than the cache held, and still did on the pull after: the platform does not stand
    /// behind the newer one (a forged or corrupted push, a store restored from backup), so the pulled limit replaced it.
    /// </summary>
    Overruled,
}
