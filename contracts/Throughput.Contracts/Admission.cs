namespace Throughput.Contracts;

public enum AdmissionState
{
    /// <summary>Admit at the purchased rate.</summary>
    Open,

    /// <summary>The deployment's metered usage reached 100% of its bucket: refuse (or spill) until the retry-after has passed.</summary>
    Throttled,

    /// <summary>The tenant is suspended: admit nothing.</summary>
    Suspended,

    /// <summary>The deployment was given back: admit nothing, ever.</summary>
    Released,

    /// <summary>Part of its PTUs found no room after a region was drained: admit at the (lower) rate given until they are placed again.</summary>
    Degraded,
}

/// <summary>
/// A deployment's admission limit as serving nodes need it. Pushed as raw JSON on the <see cref="AdmissionTopology.Exchange"/>
/// topic exchange on every change, and answered by the admission query API. Schema: contracts/schemas/admission-limit.v1.json.
/// </summary>
/// <param name="Version">The deployment's stream version: it only grows, so a node keeps the highest it has seen and ignores older ones.</param>
/// <param name="TokensPerMinute">Weighted tokens per minute the deployment may admit (PTU × input tokens per minute per PTU).</param>
/// <param name="BurstTokens">Bucket depth: weighted tokens that may be admitted at once above the steady rate.</param>
/// <param name="Utilization">Metered bucket level ÷ depth when the message was made (1 = 100%).</param>
/// <param name="RetryAfterMs">While throttled, how long until the bucket drains below the release threshold.</param>
/// <param name="OutputWeight">How many input tokens one output token counts as, for estimating a request's cost.</param>
/// <param name="CachedDeduction">Share of cached prompt tokens deducted from the cost (1 = cached tokens are free).</param>
/// <param name="AdapterCaps">
/// On an adapter set: the adapters the tenant capped, each with its share of the rate and burst (0.25 = a quarter) that
/// admission may give it; null or absent when none is capped. The set's own rate still bounds all its adapters together.
/// </param>
/// <param name="DeploymentId">The deployment the limit is for.</param>
/// <param name="TenantId">The tenant that owns the deployment.</param>
/// <param name="Model">The deployment's catalog model.</param>
/// <param name="Region">The region (or geography) the deployment was bought in.</param>
/// <param name="State">Open, Throttled, Suspended, Released or Degraded: what serving nodes may admit.</param>
/// <param name="Spillover">Whether requests past the rate are served and billed per token instead of refused (false while a spillover cap holds).</param>
/// <param name="ChangedAt">When the limit changed.</param>
public sealed record AdmissionLimitChanged(
    string DeploymentId,
    string TenantId,
    string Model,
    string Region,
    AdmissionState State,
    long TokensPerMinute,
    long BurstTokens,
    decimal Utilization,
    long RetryAfterMs,
    bool Spillover,
    decimal OutputWeight,
    decimal CachedDeduction,
    long Version,
    DateTimeOffset ChangedAt,
    IReadOnlyDictionary<string, decimal>? AdapterCaps = null);

/// <summary>Where admission limits are pushed. Routing key: <c>{region}.{model}.{deploymentId}</c> with dots in the model name as '_'.</summary>
public static class AdmissionTopology
{
    public const int CurrentVersion = 1;

    public const string Exchange = "throughput.admission";

    public const string ExchangeType = "topic";

    public const string ContentType = "application/json";

    public const string VersionHeader = "throughput-version";

    public static string RoutingKey(string region, string model, string deploymentId) =>
        $"{region}.{model.Replace('.', '_')}.{deploymentId}";
}

/// <summary>Body of <c>POST /v1/admission/query</c>: many deployments in one call.</summary>
/// <param name="DeploymentIds">The deployments whose limits to return, 1 to 1,000; unknown ids are left out of the answer.</param>
public sealed record AdmissionQuery(IReadOnlyList<string> DeploymentIds);

/// <summary>Answer of <c>POST /v1/admission/{deploymentId}/check</c> (200 when admitted, 429 when not).</summary>
/// <param name="Admitted">Whether the request may be served now.</param>
/// <param name="RemainingTokens">Weighted tokens the bucket still holds room for after this request.</param>
/// <param name="RetryAfterMs">When refused: milliseconds until the bucket has drained enough for it; 0 when admitted.</param>
/// <param name="Limit">The deployment's admission limit the decision was made against.</param>
public sealed record AdmissionDecision(bool Admitted, long RemainingTokens, long RetryAfterMs, AdmissionLimitChanged Limit);
