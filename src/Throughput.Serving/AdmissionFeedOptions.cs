using RabbitMQ.Client;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// How a serving node follows its deployments' admission limits.
/// </summary>
/// <param name="Broker">The RabbitMQ address, as for <see cref="MeteringPublisherOptions.Broker"/>.</param>
public sealed record AdmissionFeedOptions(Uri Broker)
{
    /// <summary>Every node of a RabbitMQ cluster, as for <see cref="MeteringPublisherOptions.BrokerNodes"/>; empty: the <see cref="Broker"/> URI's host and port.</summary>
    public IReadOnlyList<AmqpTcpEndpoint> BrokerNodes { get; init; } = [];

    /// <summary>Only deployments in this region (null: every region).</summary>
    public string? Region { get; init; }

    /// <summary>Only deployments of this model (null: every model).</summary>
    public string? Model { get; init; }

    public string Exchange { get; init; } = AdmissionTopology.Exchange;

    /// <summary>
    /// The platform's broker user. The platform stamps every push with it as the AMQP user id, which the broker checks
    /// against the publishing connection; a push from anyone else is ignored (and counted), whatever its version.
    /// </summary>
    public string PlatformBrokerUser { get; init; } = "throughput";

    /// <summary>
    /// How often every limit in scope is pulled again. Pushes go to a transient queue and can be lost with a connection;
    /// the last change of a deployment has no successor to reveal the gap, so a periodic pull is what bounds staleness.
    /// </summary>
    public TimeSpan ResyncInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The first pause before retrying a failed pull or reconnect; doubles per failure up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How often the leases are renewed when the cache takes them (<see cref="AdmissionCacheOptions.Leases"/>); well under the platform's lease TTL.</summary>
    public TimeSpan LeaseRenewInterval { get; init; } = AdmissionLeaseTopology.RenewInterval;

    /// <summary>Each HTTP pull gives up after this long (the cache keeps its limits meanwhile).</summary>
    public TimeSpan PullTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The AMQP client-provided connection name; default <c>throughput-admission:{machine}:{random}</c>.</summary>
    public string? ConnectionName { get; init; }

    /// <summary>Called when a pull, a connection or a pushed message fails; the feed carries on with what it has.</summary>
    public Action<Exception>? Failed { get; init; }

    /// <summary>Tests only: a push for which this returns true is dropped on arrival, as if the broker had lost it.</summary>
    internal Func<AdmissionLimitChanged, bool>? LosePush { get; init; }

    /// <summary>The topic binding for the scope: <c>{region|*}.{model|*}.#</c>, the model's dots as '_' like the routing key.</summary>
    public string BindingKey => $"{Region ?? "*"}.{Model?.Replace('.', '_') ?? "*"}.#";

    internal string EffectiveConnectionName => ConnectionName ?? $"throughput-admission:{Environment.MachineName}:{Guid.NewGuid():N}";

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Broker);
        ArgumentException.ThrowIfNullOrEmpty(Exchange);
        ArgumentException.ThrowIfNullOrEmpty(PlatformBrokerUser);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ResyncInterval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RetryDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRetryDelay, RetryDelay);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(PullTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LeaseRenewInterval, TimeSpan.Zero);
    }
}
