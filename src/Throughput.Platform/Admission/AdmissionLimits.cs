using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Tenants;

namespace Throughput.Admission;

/// <summary>What serving nodes are told about a deployment, derived from its state and its tenant's.</summary>
public static class AdmissionLimits
{
    public static AdmissionState StateOf(Deployment d, Tenant? tenant) =>
        d.Status == DeploymentStatus.Released ? AdmissionState.Released
        : tenant?.Status == TenantStatus.Suspended ? AdmissionState.Suspended
        : d.Throttled ? AdmissionState.Throttled
        : d.Degraded ? AdmissionState.Degraded
        : AdmissionState.Open;

    /// <summary>
    /// The version adds the deployment's and the tenant's admission revisions: each grows by one per change that
    /// matters to admission, so the sum grows by exactly one per change and a node can tell a missed push.
    /// </summary>
    public static AdmissionLimitChanged Of(Deployment d, Tenant? tenant, DateTimeOffset now)
    {
        var level = d.LevelAt(now);
        var state = StateOf(d, tenant);
        return new AdmissionLimitChanged(d.Id, d.TenantId, d.Model, d.Region, state, d.Limit.TokensPerMinute, d.Limit.BurstTokens,
            d.UtilizationOf(level), state == AdmissionState.Throttled ? d.RetryAfterMs(level) : 0, d.SpillsAt(now), d.OutputWeight, d.CachedDeduction,
            d.AdmissionRevision + (tenant?.AdmissionRevision ?? 0), now, CapsOf(d));
    }

    static Dictionary<string, decimal>? CapsOf(Deployment d)
    {
        if (d.Adapters is not { } adapters || !adapters.Caps.Values.Any(c => c is not null)) return null;
        return adapters.Caps.Where(c => c.Value is not null).ToDictionary(c => c.Key, c => c.Value!.Value, StringComparer.Ordinal);
    }

    /// <summary>The platform-side check for one request of the given weighted cost: admitted while the bucket has room for it.</summary>
    public static AdmissionDecision Check(Deployment d, Tenant? tenant, long estimatedTokens, DateTimeOffset now)
    {
        var limit = Of(d, tenant, now);
        var level = d.LevelAt(now);
        var remaining = (long)Math.Max(0, decimal.Floor(d.Limit.BurstTokens - level));
        return limit.State switch
        {
            AdmissionState.Open or AdmissionState.Degraded when estimatedTokens <= remaining => new AdmissionDecision(true, remaining - estimatedTokens, 0, limit),
            AdmissionState.Open or AdmissionState.Degraded => new AdmissionDecision(false, remaining, WaitFor(d, level + estimatedTokens - d.Limit.BurstTokens), limit),
            AdmissionState.Throttled when d.SpillsAt(now) => new AdmissionDecision(true, 0, 0, limit),
            AdmissionState.Throttled => new AdmissionDecision(false, 0, limit.RetryAfterMs, limit),
            _ => new AdmissionDecision(false, 0, 0, limit),
        };
    }

    static long WaitFor(Deployment d, decimal excess) =>
        d.TokensPerSecond == 0 ? 0 : (long)decimal.Ceiling(excess / d.TokensPerSecond * 1000);
}
