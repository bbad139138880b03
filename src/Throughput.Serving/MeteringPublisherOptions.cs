using System.Globalization;
using System.Text.RegularExpressions;
using RabbitMQ.Client;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>How a serving node publishes its metering.</summary>
/// <param name="Broker">The RabbitMQ address, <c>amqp://user:password@host:port/vhost</c>; see <see cref="BrokerSettings.FromEnvironment"/>.</param>
/// <param name="ProducerId">The serving node's stable identity (schema pattern <c>^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$</c>); keep it across restarts.</param>
public sealed partial record MeteringPublisherOptions(Uri Broker, string ProducerId)
{
    /// <summary>
    /// Every node of a RabbitMQ cluster (e.g. <see cref="BrokerSettings.Endpoints"/>); each connection goes to one of them,
    /// in random order, so the publisher fails over when a node dies. Empty: the <see cref="Broker"/> URI's host and port.
    /// </summary>
    public IReadOnlyList<AmqpTcpEndpoint> BrokerNodes { get; init; } = [];

    /// <summary>A consistent-hash exchange; the routing key of every batch is its lane, <c>lane.{n}</c>.</summary>
    public string Exchange { get; init; } = MeteringTopology.Exchange;

    /// <summary>A batch is sealed when it holds this many records (the schema allows up to 10,000).</summary>
    public int MaxBatchRecords { get; init; } = 1000;

    /// <summary>A batch is sealed at the latest this long after its first record, unless its lane still has a batch in flight.</summary>
    public TimeSpan MaxLinger { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Records recorded but not yet confirmed; when full, <see cref="MeteringPublisher.RecordAsync"/> waits and <see cref="MeteringPublisher.TryRecord"/> refuses.</summary>
    public int BufferCapacity { get; init; } = 100_000;

    /// <summary>
    /// The sequence of the first batch; every later batch takes the next value. The default, the current Unix time in
    /// microseconds, lets a restarted producer with the same id continue above every sequence it used before, as
    /// long as it published less than one batch per microsecond on average (the consumers dedupe by the highest
    /// sequence seen per producer). Set it explicitly only when the producer persists its last sequence.
    /// </summary>
    public long InitialSequence { get; init; } = (DateTimeOffset.UtcNow - DateTimeOffset.UnixEpoch).Ticks / TimeSpan.TicksPerMicrosecond;

    /// <summary>The AMQP client-provided connection name, as shown in the management UI; default <c>throughput-serving:{ProducerId}</c>.</summary>
    public string? ConnectionName { get; init; }

    /// <summary>How long <see cref="MeteringPublisher.DisposeAsync"/> waits for outstanding records to be confirmed; what is left after it is abandoned.</summary>
    public TimeSpan DisposeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A publish not confirmed within this time counts as a lost channel: the connection is recreated and the batch republished.</summary>
    public TimeSpan ConfirmTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The first pause before a republish or reconnect; it doubles with each failed attempt up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Called with the time from publishing a batch to the broker's confirm, on the publisher's threads: keep it cheap.</summary>
    public Action<TimeSpan>? ConfirmLatency { get; init; }

    /// <summary>Called when a publish or reconnect fails (nack, return, lost connection); the batch is retried, never dropped.</summary>
    public Action<Exception>? PublishFailed { get; init; }

    internal const long MaxSequence = 9_007_199_254_740_991; // 2^53 - 1, the schema's bound (exact in every JSON parser)

    internal string EffectiveConnectionName => ConnectionName ?? "throughput-serving:" + ProducerId;

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Broker);
        if (Broker.UserInfo.Split(':')[0].Length == 0)
            throw new ArgumentException("The broker URI names no user: connect with the node's own broker user and password.", nameof(Broker));
        if (ProducerId is null || !ProducerIdPattern().IsMatch(ProducerId))
            throw new ArgumentException($"Producer id '{ProducerId}' does not match {ProducerIdPattern()}.", nameof(ProducerId));
        ArgumentException.ThrowIfNullOrEmpty(Exchange);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBatchRecords, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxBatchRecords, 10_000);
        ArgumentOutOfRangeException.ThrowIfLessThan(BufferCapacity, MaxBatchRecords);
        ArgumentOutOfRangeException.ThrowIfLessThan(InitialSequence, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(InitialSequence, MaxSequence);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxLinger, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConfirmTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RetryDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRetryDelay, RetryDelay);
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    private static partial Regex ProducerIdPattern();
}

/// <summary>
/// A serving node's RabbitMQ settings: where the broker is from the THROUGHPUT_RABBIT_* variables (the local defaults of
/// infra/env.sh), and the node's own broker user from THROUGHPUT_NODE_BROKER_USER and THROUGHPUT_NODE_BROKER_PASSWORD,
/// as the platform issued them (POST /v1/operator/serving-nodes/{producerId}/credentials). There is no default user:
/// a node never connects as the platform.
/// </summary>
public sealed record BrokerSettings(string Host, int Port, string VirtualHost, string User, string Password)
{
    /// <summary>Every node of a RabbitMQ cluster, <c>host[:port]</c> comma-separated (THROUGHPUT_RABBIT_NODES); empty: Host and Port alone.</summary>
    public string Nodes { get; init; } = "";

    /// <summary>Where connections may go: the cluster's nodes, or Host and Port; for <see cref="MeteringPublisherOptions.BrokerNodes"/>.</summary>
    public IReadOnlyList<AmqpTcpEndpoint> Endpoints => Nodes.Length == 0 ? [new AmqpTcpEndpoint(Host, Port)] : AmqpTcpEndpoint.ParseMultiple(Nodes);

    public static BrokerSettings FromEnvironment() => FromVariables(Environment.GetEnvironmentVariable);

    internal static BrokerSettings FromVariables(Func<string, string?> variable)
    {
        string Read(string name, string fallback) => variable(name) is { Length: > 0 } value ? value : fallback;
        return new(
            Read("THROUGHPUT_RABBIT_HOST", "127.0.0.1"),
            int.Parse(Read("THROUGHPUT_RABBIT_PORT", "5672"), CultureInfo.InvariantCulture),
            Read("THROUGHPUT_RABBIT_VHOST", "throughput"),
            Read("THROUGHPUT_NODE_BROKER_USER", ""),
            Read("THROUGHPUT_NODE_BROKER_PASSWORD", ""))
        {
            Nodes = Read("THROUGHPUT_RABBIT_NODES", ""),
        };
    }

    public Uri Uri => new(User.Length == 0
        ? $"amqp://{Host}:{Port}/{Uri.EscapeDataString(VirtualHost)}"
        : $"amqp://{Uri.EscapeDataString(User)}:{Uri.EscapeDataString(Password)}@{Host}:{Port}/{Uri.EscapeDataString(VirtualHost)}");

    /// <summary>Without the password, so the settings can be logged.</summary>
    public override string ToString() => $"amqp://{User}@{(Nodes.Length == 0 ? $"{Host}:{Port}" : Nodes)}/{VirtualHost}";
}
