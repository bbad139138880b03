namespace Throughput.Deployments;

/// <summary>Usage folded from one consumer batch of metering records for one deployment.</summary>
public sealed record UsageMetered(
    string DeploymentId,
    IReadOnlyList<ProducerRange> Producers,
    long Records,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    DateTimeOffset MeteredAt);

/// <summary>The sequences of one producer's batches that a usage event folded.</summary>
public sealed record ProducerRange(string ProducerId, long FirstSequence, long LastSequence);

/// <summary>A deployment's state, evolved from its stream; the decisions about it read only this.</summary>
public sealed record Deployment(
    string Id,
    long Records,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    long Version)
{
    public static readonly Deployment Initial = new("", 0, 0, 0, 0, 0);

    public static Deployment Create(UsageMetered e) => Initial.Apply(e) with { Id = e.DeploymentId };

    public Deployment Apply(UsageMetered e) => this with
    {
        Records = Records + e.Records,
        PromptTokens = PromptTokens + e.PromptTokens,
        CachedTokens = CachedTokens + e.CachedTokens,
        OutputTokens = OutputTokens + e.OutputTokens,
    };
}
