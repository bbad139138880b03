namespace Throughput.Deployments;

/// <summary>
/// The tenant's adapters (fine-tunes of the deployment's base model) a deployment serves: one, on an adapter deployment;
/// up to <see cref="MaxShared"/>, on an adapter set (<see cref="Shared"/>), which shares one rate and one bucket among them.
/// <see cref="Caps"/> maps each adapter id to its cap as a share of the deployment's rate, or null when it may use all of it.
/// </summary>
/// <param name="Shared">False: one adapter with PTUs of its own (adapter deployment); true: an adapter set sharing one rate.</param>
/// <param name="Caps">The adapters it serves, each with its cap as a share of the rate (0 to 1), or null for no cap.</param>
public sealed record DeploymentAdapters(bool Shared, IReadOnlyDictionary<string, decimal?> Caps)
{
    public const int MaxShared = 1_000;
}

/// <summary>One adapter's part of a usage event, in the month (UTC, <c>yyyy-MM</c>) its records finished in.</summary>
public sealed record AdapterUsage(string AdapterId, string Month, TokenCounts Tokens, decimal WeightedTokens);
