using System.Text.Json.Serialization;
using Throughput.Capacity;
using Throughput.Catalog;

namespace Throughput.Deployments;

/// <summary>An event of a deployment's own stream: what its snapshot and <see cref="Deployment.Then(DeploymentEvent)"/> fold.</summary>
public abstract record DeploymentEvent(string DeploymentId);

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
    PriceList Prices,
    DateTimeOffset CreatedAt,
    DeploymentAdapters? Adapters = null) : DeploymentEvent(DeploymentId);

public sealed record DeploymentResized(string DeploymentId, decimal FromPtu, decimal ToPtu, DateTimeOffset ResizedAt) : DeploymentEvent(DeploymentId);

public sealed record SpilloverEnabled(string DeploymentId, DateTimeOffset At) : DeploymentEvent(DeploymentId);

public sealed record SpilloverDisabled(string DeploymentId, DateTimeOffset At) : DeploymentEvent(DeploymentId);

/// <summary>
/// A spending cap (<see cref="AlertId"/>) was reached in <see cref="Month"/> (UTC, <c>yyyy-MM</c>): spilled records that
/// finished in that month are no longer admitted nor billed, and the month's invoice bills spillover up to
/// <see cref="Cap"/>. A later month is not capped (docs/alerts.md).
/// </summary>
/// <param name="Spend">The month's spillover spend that crossed the cap.</param>
/// <param name="Cap">The cap: the alert's threshold, in the tenant's currency; null in events recorded before caps carried it
/// (their month is billed as it was).</param>
/// <param name="TenantWide">The alert caps the tenant's deployments together (it has no deployment), not this one alone.</param>
public sealed record SpilloverCapReached(string DeploymentId, string AlertId, string Month, decimal Spend, DateTimeOffset At, decimal? Cap = null, bool TenantWide = false)
    : DeploymentEvent(DeploymentId);

/// <summary>
/// The cap no longer holds: its alert was changed or removed, or (<see cref="MonthEnded"/>) a later month began, which
/// tells serving nodes spillover is on again while spilled records of the capped month stay refused.
/// </summary>
public sealed record SpilloverCapLifted(string DeploymentId, string AlertId, bool MonthEnded, DateTimeOffset At) : DeploymentEvent(DeploymentId);

/// <summary>
/// The platform placed a Data Zone or Global deployment's PTUs in these regions' pools (the whole placement, not a change
/// to it); <see cref="UnplacedPtu"/> found no room anywhere, and while it is above 0 the deployment is degraded. Billing
/// does not read it: what the customer bought and pays for is <see cref="DeploymentCreated"/> and its resizes.
/// </summary>
public sealed record DeploymentPlaced(string DeploymentId, IReadOnlyList<PlacedPtu> Shares, decimal UnplacedPtu, string Reason, DateTimeOffset At) : DeploymentEvent(DeploymentId);

public sealed record DeploymentReleased(string DeploymentId, decimal Ptu, DateTimeOffset ReleasedAt) : DeploymentEvent(DeploymentId);

/// <summary>The sequences of one producer's batches that a usage event folded (the dedupe ledger holds each one).</summary>
public sealed record ProducerRange(string ProducerId, long FirstSequence, long LastSequence);

/// <summary>The part of a usage event whose records finished in one calendar month (UTC, <c>yyyy-MM</c>).</summary>
public sealed record MonthlyUsage(string Month, TokenCounts Tokens);

/// <summary>
/// Usage folded from one consumer batch of metering records for one deployment: sums, the producer sequences it
/// covers, and the bucket after it. <see cref="Months"/> is set only when the records finished in more than one month
/// (a batch across midnight at a month's end), so that each month is billed its own usage. <see cref="TenantId"/> is
/// null in events written before usage named its tenant.
/// </summary>
[JsonConverter(typeof(UsageMeteredJson))]
public sealed record UsageMetered(
    string DeploymentId,
    string? TenantId,
    IReadOnlyList<ProducerRange> Producers,
    TokenCounts Tokens,
    decimal WeightedTokens,
    DateTimeOffset FirstStartedAt,
    DateTimeOffset LastFinishedAt,
    decimal BucketLevel,
    decimal Utilization,
    long TokensPerMinute,
    DateTimeOffset MeteredAt,
    IReadOnlyList<MonthlyUsage>? Months = null,
    IReadOnlyList<AdapterUsage>? Adapters = null);

/// <summary>
/// The usage one consumer batch of a metering partition folded: a <see cref="UsageMetered"/> per deployment it billed, in
/// one event, so that appending it and every read model following the log pay per batch, not per deployment in it.
/// </summary>
[JsonConverter(typeof(UsageBatchMeteredJson))]
public sealed record UsageBatchMetered(IReadOnlyList<UsageMetered> Usage);

/// <summary>The bucket reached 100%: serving nodes must refuse (or spill) until <see cref="RetryAfterMs"/> has passed.</summary>
public sealed record DeploymentThrottled(string DeploymentId, decimal Utilization, long RetryAfterMs, DateTimeOffset ThrottledAt) : DeploymentEvent(DeploymentId);

/// <summary>The bucket drained below the release threshold; the level is settled at <see cref="LiftedAt"/>.</summary>
public sealed record ThrottleLifted(string DeploymentId, decimal BucketLevel, decimal Utilization, DateTimeOffset LiftedAt) : DeploymentEvent(DeploymentId);

public enum DeploymentStatus
{
    Active,
    Released,
}

/// <summary>The rate a deployment may admit: weighted tokens per minute, and the bucket depth for bursts.</summary>
/// <param name="TokensPerMinute">Weighted tokens per minute the purchased PTUs admit.</param>
/// <param name="BurstTokens">The bucket's size in weighted tokens: how far above the rate a burst may go before throttling.</param>
public sealed record AdmissionLimit(long TokensPerMinute, long BurstTokens);

/// <summary>
/// A deployment's state, evolved from its stream; the decisions about it read only this. <see cref="Revision"/> counts
/// the customer's own changes and is the ETag: metering moves the stream version constantly, and a customer's
/// If-Match must not fail because usage arrived.
/// </summary>
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
    TokenCounts Usage,
    decimal WeightedTokens,
    decimal BucketLevel,
    DateTimeOffset BucketAt,
    bool Throttled,
    long AdmissionRevision,
    long Revision,
    long Version,
    DateTimeOffset? ReleasedAt = null,
    DateTimeOffset? SpilloverDisabledAt = null,
    DeploymentAdapters? Adapters = null,
    PriceList? Prices = null)
{
    /// <summary>Where its PTUs are: null until the platform places it (Regional deployments and those of earlier purchases stay whole in <see cref="Region"/>).</summary>
    public IReadOnlyList<PlacedPtu>? Placement { get; init; }

    /// <summary>PTUs the platform found no room for after a drain: admission runs at the placed PTUs only until they are placed again.</summary>
    public decimal UnplacedPtu { get; init; }

    /// <summary>The month (UTC, <c>yyyy-MM</c>) a spillover cap holds in, and the alert that set it; null: none.</summary>
    public string? SpilloverCappedIn { get; init; }

    public string? SpilloverCappedBy { get; init; }

    /// <summary>Whether a spilled record that finished at this time is past a spillover cap (the cap holds only in its own month).</summary>
    public bool SpilloverCapped(DateTimeOffset finishedAt) => SpilloverCappedIn is { } month && month == MonthOf(finishedAt);

    /// <summary>What serving nodes are told at <paramref name="now"/>: spillover is on and no cap holds this month.</summary>
    public bool SpillsAt(DateTimeOffset now) => Spillover && !SpilloverCapped(now);

    public static string MonthOf(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM", System.Globalization.CultureInfo.InvariantCulture);

    public bool Degraded => Status == DeploymentStatus.Active && UnplacedPtu > 0;

    public IReadOnlyList<PlacedPtu> Shares => Status == DeploymentStatus.Released ? [] : Placement ?? [new PlacedPtu(Region, Ptu)];

    public bool PlacedIn(string region) => Shares.Any(s => s.Region == region);

    /// <summary>Serving nodes of the region it was bought in and of every region it has been placed in serve it (each with its leased share).</summary>
    public bool ServedFrom(string region) => Region == region || Placement?.Any(s => s.Region == region) == true;

    /// <summary>Every region its serving nodes may be in: where it was bought, and where it is placed.</summary>
    public IReadOnlyList<string> ServedRegions() => [.. (Placement ?? []).Select(s => s.Region).Prepend(Region).Distinct(StringComparer.Ordinal)];

    /// <summary>A throttled deployment is released once utilization falls below this, so it does not flap at 100%.</summary>
    public const decimal ReleaseThreshold = 0.95m;

    public decimal TokensPerSecond => Limit.TokensPerMinute / 60m;

    /// <summary>The bucket level at a moment: it drains continuously at the purchased rate and never goes below zero.</summary>
    public decimal LevelAt(DateTimeOffset at)
    {
        var seconds = at <= BucketAt ? 0 : (decimal)(at - BucketAt).TotalSeconds;
        return Math.Max(0, BucketLevel - TokensPerSecond * seconds);
    }

    public decimal UtilizationOf(decimal level) => Limit.BurstTokens == 0 ? 0 : decimal.Round(level / Limit.BurstTokens, 6);

    /// <summary>Milliseconds until the level drains under the release threshold.</summary>
    public long RetryAfterMs(decimal level)
    {
        var excess = level - ReleaseThreshold * Limit.BurstTokens;
        return excess <= 0 || TokensPerSecond == 0 ? 0 : (long)decimal.Ceiling(excess / TokensPerSecond * 1000);
    }


    public AdmissionLimit Limit
    {
        get
        {
            var perMinute = Status == DeploymentStatus.Released ? 0 : (long)decimal.Floor((Ptu - UnplacedPtu) * InputTokensPerMinutePerPtu);
            return new AdmissionLimit(perMinute, perMinute * BurstSeconds / 60);
        }
    }

    public static Deployment Create(DeploymentCreated e) => new(
        e.DeploymentId, e.TenantId, e.Name, e.Model, e.Region, e.Type, e.Ptu, e.InputTokensPerMinutePerPtu, e.OutputWeight,
        e.CachedDeduction, e.BurstSeconds, e.Spillover, e.Currency, DeploymentStatus.Active, e.CreatedAt,
        default, 0, 0, e.CreatedAt, false, 1, 1, 0, Adapters: e.Adapters, Prices: e.Prices);

    // The level drained at the old rate until the resize; from then on it drains at the new one.
    public Deployment Apply(DeploymentResized e) =>
        this with { BucketLevel = LevelAt(e.ResizedAt), BucketAt = Max(BucketAt, e.ResizedAt), Ptu = e.ToPtu, AdmissionRevision = AdmissionRevision + 1, Revision = Revision + 1 };

    // Not the customer's change: the ETag (Revision) stays, so their If-Match still holds after a re-placement.
    public Deployment Apply(DeploymentPlaced e) => this with
    {
        BucketLevel = LevelAt(e.At), BucketAt = Max(BucketAt, e.At), Placement = e.Shares, UnplacedPtu = e.UnplacedPtu, AdmissionRevision = AdmissionRevision + 1,
    };

    public Deployment Apply(SpilloverEnabled e) => this with { Spillover = true, AdmissionRevision = AdmissionRevision + 1, Revision = Revision + 1 };

    public Deployment Apply(SpilloverDisabled e) =>
        this with { Spillover = false, SpilloverDisabledAt = e.At, AdmissionRevision = AdmissionRevision + 1, Revision = Revision + 1 };

    public Deployment Apply(SpilloverCapReached e) =>
        this with { SpilloverCappedIn = e.Month, SpilloverCappedBy = e.AlertId, AdmissionRevision = AdmissionRevision + 1 };

    public Deployment Apply(SpilloverCapLifted e) =>
        SpilloverCappedBy != e.AlertId ? this
        : e.MonthEnded ? this with { SpilloverCappedBy = null, AdmissionRevision = AdmissionRevision + 1 }
        : this with { SpilloverCappedIn = null, SpilloverCappedBy = null, AdmissionRevision = AdmissionRevision + 1 };

    public Deployment Apply(DeploymentReleased e) =>
        this with { Status = DeploymentStatus.Released, ReleasedAt = e.ReleasedAt, AdmissionRevision = AdmissionRevision + 1, Revision = Revision + 1 };

    /// <summary>
    /// Whether a record that finished at this time may be billed as spilled: spillover is on, or the record finished before
    /// it was last turned off (served while it was on, metered after).
    /// </summary>
    public bool MaySpill(DateTimeOffset finishedAt) => Spillover || finishedAt <= SpilloverDisabledAt;

    /// <summary>A record may name an adapter exactly when the deployment serves adapters, and then only one of them.</summary>
    public bool Holds(string? adapterId) => Adapters is { } held ? adapterId is not null && held.Caps.ContainsKey(adapterId) : adapterId is null;

    /// <summary>Usage that finished before the release is billed even when it arrives after it; nothing after it is.</summary>
    public bool Served(DateTimeOffset finishedAt) => Status != DeploymentStatus.Released || finishedAt <= ReleasedAt;

    /// <summary>
    /// Usage folded in. Not named Apply: usage lives in partition streams and the deployment's meter row, so Marten's
    /// snapshot must not take it (it would build a deployment document for each partition stream).
    /// </summary>
    public Deployment Metered(UsageMetered e) => DeploymentMeter.Of(this, 0).Then(e).On(this);

    public Deployment Apply(DeploymentThrottled e) => this with { Throttled = true, AdmissionRevision = AdmissionRevision + 1 };

    public Deployment Apply(ThrottleLifted e) =>
        this with { Throttled = false, BucketLevel = e.BucketLevel, BucketAt = Max(BucketAt, e.LiftedAt), AdmissionRevision = AdmissionRevision + 1 };

    /// <summary>
    /// The state after one more event of the deployment's stream: the one fold of it outside Marten's snapshot (which calls
    /// the Apply methods itself, and would take a method named Evolve for its own convention). Usage is not one of them:
    /// it lives in partition streams and is folded by <see cref="Metered"/>.
    /// </summary>
    public Deployment Then(DeploymentEvent @event) => @event switch
    {
        DeploymentCreated e => Create(e),
        DeploymentResized e => Apply(e),
        DeploymentPlaced e => Apply(e),
        SpilloverEnabled e => Apply(e),
        SpilloverDisabled e => Apply(e),
        SpilloverCapReached e => Apply(e),
        SpilloverCapLifted e => Apply(e),
        DeploymentReleased e => Apply(e),
        DeploymentThrottled e => Apply(e),
        ThrottleLifted e => Apply(e),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an event of a deployment's stream"),
    };

    public Deployment Then(IEnumerable<DeploymentEvent> events) => events.Aggregate(this, (d, e) => d.Then(e));

    static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
}
