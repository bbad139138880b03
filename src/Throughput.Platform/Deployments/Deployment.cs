using Throughput.Catalog;

namespace Throughput.Deployments;

public sealed record DeploymentCreated(
    string DeploymentId,
    string TenantId,
    string Name,
    string Model,
    string Region,
    DeploymentType Type,
    decimal Ptu,
    long InputTokensPerMinutePerPtu,
    decimal OutputWeight,
    decimal CachedDeduction,
    int BurstSeconds,
    bool Spillover,
    string Currency,
    DateTimeOffset CreatedAt);

public sealed record DeploymentResized(string DeploymentId, decimal FromPtu, decimal ToPtu, DateTimeOffset ResizedAt);

public sealed record SpilloverEnabled(string DeploymentId, DateTimeOffset At);

public sealed record SpilloverDisabled(string DeploymentId, DateTimeOffset At);

public sealed record DeploymentReleased(string DeploymentId, decimal Ptu, DateTimeOffset ReleasedAt);

/// <summary>The sequences of one producer's batches that a usage event folded.</summary>
public sealed record ProducerRange(string ProducerId, long FirstSequence, long LastSequence);

/// <summary>Usage folded from one consumer batch of metering records for one deployment.</summary>
public sealed record UsageMetered(
    string DeploymentId,
    IReadOnlyList<ProducerRange> Producers,
    long Records,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    DateTimeOffset MeteredAt);

public enum DeploymentStatus
{
    Active,
    Released,
}

/// <summary>The rate a deployment may admit: weighted tokens per minute, and the bucket depth for bursts.</summary>
public sealed record AdmissionLimit(long TokensPerMinute, long BurstTokens);

/// <summary>A deployment's state, evolved from its stream; the decisions about it read only this.</summary>
public sealed record Deployment(
    string Id,
    string TenantId,
    string Name,
    string Model,
    string Region,
    DeploymentType Type,
    decimal Ptu,
    long InputTokensPerMinutePerPtu,
    decimal OutputWeight,
    decimal CachedDeduction,
    int BurstSeconds,
    bool Spillover,
    string Currency,
    DeploymentStatus Status,
    DateTimeOffset CreatedAt,
    long Records,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    long Version)
{
    public AdmissionLimit Limit
    {
        get
        {
            var perMinute = Status == DeploymentStatus.Released ? 0 : (long)decimal.Floor(Ptu * InputTokensPerMinutePerPtu);
            return new AdmissionLimit(perMinute, perMinute * BurstSeconds / 60);
        }
    }

    public static Deployment Create(DeploymentCreated e) => new(
        e.DeploymentId, e.TenantId, e.Name, e.Model, e.Region, e.Type, e.Ptu, e.InputTokensPerMinutePerPtu, e.OutputWeight,
        e.CachedDeduction, e.BurstSeconds, e.Spillover, e.Currency, DeploymentStatus.Active, e.CreatedAt, 0, 0, 0, 0, 0);

    public Deployment Apply(DeploymentResized e) => this with { Ptu = e.ToPtu };

    public Deployment Apply(SpilloverEnabled e) => this with { Spillover = true };

    public Deployment Apply(SpilloverDisabled e) => this with { Spillover = false };

    public Deployment Apply(DeploymentReleased e) => this with { Status = DeploymentStatus.Released };

    public Deployment Apply(UsageMetered e) => this with
    {
        Records = Records + e.Records,
        PromptTokens = PromptTokens + e.PromptTokens,
        CachedTokens = CachedTokens + e.CachedTokens,
        OutputTokens = OutputTokens + e.OutputTokens,
    };
}
