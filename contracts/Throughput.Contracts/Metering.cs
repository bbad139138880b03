namespace Throughput.Contracts;

/// <summary>
/// What a serving node publishes: one batch of metering records, raw JSON (camelCase) on the
/// <see cref="MeteringTopology.Exchange"/> exchange. Schema: contracts/schemas/metering-batch.v1.json.
/// </summary>
/// <param name="Version">Wire format version; this is version 1.</param>
/// <param name="ProducerId">
/// The serving node's stable identity, one per publishing process. The node connects as its own RabbitMQ user,
/// <c>node.{ProducerId}</c>, with the password the platform issued it, and sets the message's AMQP <c>user_id</c> property
/// to that user (the broker checks it against the connection's user); otherwise the batch is quarantined as an
/// unauthenticated producer.
/// </param>
/// <param name="Sequence">Grows by one with every batch the producer publishes; a repeat is a duplicate.</param>
/// <param name="SentAt">When the producer sealed the batch (UTC).</param>
public sealed record MeteringBatch(
    int Version,
    string ProducerId,
    long Sequence,
    DateTimeOffset SentAt,
    IReadOnlyList<MeteringRecord> Records);

/// <summary>One served request's actual token use.</summary>
/// <param name="EstimatedTokens">The weighted cost admitted for the request before it ran (0 when admission was not tracked).</param>
/// <param name="Spilled">True when the request was served by the spillover deployment and is billed per token.</param>
/// <param name="AdapterId">
/// The tenant's adapter (a fine-tune of the deployment's base model) that served the request: required on an adapter
/// deployment or adapter set, absent on a base deployment. A record naming an adapter the deployment does not hold is
/// quarantined. Optional on the wire: producers that know no adapters leave it out.
/// </param>
/// <param name="Phase">
/// On a phase-split fleet, the half of the request this record meters: <see cref="MeteringPhases.Prompt"/> (prompt and
/// cached tokens only, from a prompt server) or <see cref="MeteringPhases.Generation"/> (output tokens only, from a
/// generation server), both under the request's <paramref name="RequestId"/>. Absent: the record meters the whole request.
/// It must be the phase its serving node is registered with; otherwise the record is quarantined.
/// </param>
public sealed record MeteringRecord(
    string RecordId,
    string DeploymentId,
    string RequestId,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    bool Spilled,
    long EstimatedTokens,
    DateTimeOffset StartedAt,
    DateTimeOffset FinishedAt,
    string? AdapterId = null,
    string? Phase = null);

/// <summary>The values of <see cref="MeteringRecord.Phase"/>.</summary>
public static class MeteringPhases
{
    public const string Prompt = "prompt";
    public const string Generation = "generation";
}

/// <summary>Where metering batches travel. Serving nodes in any language use the same names.</summary>
public static class MeteringTopology
{
    public const int CurrentVersion = 1;

    /// <summary>
    /// Consistent-hash exchange. A message's routing key is the lane of its records' deployments (<see cref="LaneKey"/>), or
    /// the deployment id when every record is of that one deployment; either way one partition queue meters a deployment.
    /// </summary>
    public const string Exchange = "throughput.metering";

    /// <summary>
    /// Deployments are spread over this many lanes. A message may hold records of every deployment in one lane, so a node
    /// serving thousands of small deployments sends a few large messages rather than one per deployment.
    /// </summary>
    public const int Lanes = 64;

    /// <summary>
    /// The lane of a deployment: the 32-bit FNV-1a hash of its id's UTF-8 bytes (offset basis 2166136261, prime 16777619),
    /// modulo <see cref="Lanes"/>. Nodes in other languages compute the same.
    /// </summary>
    public static int LaneOf(string deploymentId)
    {
        var hash = 2166136261u;
        var max = System.Text.Encoding.UTF8.GetMaxByteCount(deploymentId.Length);
        Span<byte> utf8 = max <= 512 ? stackalloc byte[512] : new byte[max];
        foreach (var b in utf8[..System.Text.Encoding.UTF8.GetBytes(deploymentId, utf8)]) hash = (hash ^ b) * 16777619u;
        return (int)(hash % Lanes);
    }

    /// <summary>The routing key of a lane's messages: <c>lane.{n}</c>.</summary>
    public static string LaneKey(int lane) => LaneKeys[lane];

    public const string LaneKeyPrefix = "lane.";

    static readonly string[] LaneKeys = [.. Enumerable.Range(0, Lanes).Select(n => LaneKeyPrefix + n.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    public const string ExchangeType = "x-consistent-hash";

    /// <summary>Partition queues are named <c>throughput.metering.p{n}</c>.</summary>
    public const string PartitionQueuePrefix = "throughput.metering.p";

    public const string ContentType = "application/json";

    /// <summary>AMQP header carrying <see cref="MeteringBatch.Version"/> so a consumer can refuse a format it does not know before parsing.</summary>
    public const string VersionHeader = "throughput-version";

    /// <summary>
    /// Optional AMQP header: the W3C trace context (<c>00-{trace id}-{span id}-{flags}</c>) of the producer's publish, which
    /// the platform's consumer span links to. A malformed value is ignored, never refused.
    /// </summary>
    public const string TraceParentHeader = "traceparent";
}
