using System.Text;
using JasperFx.Events;
using Marten;
using MassTransit;
using Throughput.Admission;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Nodes;
using Throughput.Tenants;

namespace Throughput.Metering;

/// <summary>
/// Folds a consumer batch of metering messages from one partition (or the batches that waited together, <see cref="GroupCommit{TBatch}"/>): one usage event for the batch (each deployment's
/// usage in it) appended to the partition's stream, each deployment's meter (bucket and totals) moved in the partition's
/// memory and written in bulk at its checkpoint (<see cref="PartitionDeployments"/>), a
/// throttle or lift appended to the deployment's own stream, in one PostgreSQL transaction with the dedupe claims and
/// the quarantine of whatever was refused. The partition's single active consumer makes this the deployments' only
/// meter writer (the throttle lifter aside, which the meters' versions guard); the claims make redeliveries, duplicate
/// publishes and out-of-order arrivals count once. A throttle or lift goes out to serving nodes straight after the commit,
/// from the state this batch decided on (<see cref="PushAfterCommit"/> would read it back first).
/// </summary>
public sealed class MeteringConsumer(IDocumentStore store, PartitionDeployments partitions, MeteringOptions options, TimeProvider clock, MeteringMetrics metrics,
    AdmissionPush push)
    : IConsumer<Batch<MeteringFrame>>
{
    /// <summary>Clock skew tolerated between serving nodes and the platform before a record's times are refused.</summary>
    public static readonly TimeSpan FutureTolerance = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How old a record may be when it is metered (as Stripe's 35 days): long enough for a node that was cut off over a month
    /// end to deliver, short enough that a bad clock cannot put usage into a month issued long ago.
    /// </summary>
    public static readonly TimeSpan BackdatingWindow = TimeSpan.FromDays(35);

    /// <summary>The ledger key of a message-level refusal (no deployment).</summary>
    const string WholeMessage = "";

    /// <summary>
    /// A message as the ledger claims it: whole, under its first record's deployment (the key a message of one deployment
    /// had when claims were taken per deployment, so a replay across that change is still told apart), or refused whole.
    /// </summary>
    sealed record Piece(MeteringFrame Frame, QuarantinedMetering? Refusal)
    {
        public (string, long, string) Key => (Frame.ProducerId, Frame.Sequence, Refusal is null && Frame.Records.Count > 0 ? Frame.Records[0].DeploymentId : WholeMessage);

        public long ContentHash { get; } = Refusal is null ? AppliedBatches.ContentHash(Frame.Records) : 0;
    }

    public Task Consume(ConsumeContext<Batch<MeteringFrame>> context) =>
        partitions.Of(Queue(context)).Batches.FoldAsync(new HandedBatch(context, System.Diagnostics.Activity.Current?.Context ?? default), FoldAsync);

    /// <summary>
    /// A message's records for one deployment, as their positions in the message: grouping a batch copies no record (copied
    /// into a list per message and deployment, they were the largest part of what the consumer allocated per record).
    /// </summary>
    sealed class RecordsAt(IReadOnlyList<MeteredRecord> message, int first) : IReadOnlyList<MeteredRecord>
    {
        readonly List<int> _positions = [first];

        public void Add(int position) => _positions.Add(position);

        public MeteredRecord this[int index] => message[_positions[index]];

        public int Count => _positions.Count;

        public IEnumerator<MeteredRecord> GetEnumerator()
        {
            foreach (var position in _positions) yield return message[position];
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>A batch as MassTransit handed it over, with the trace context of its consume span (the group's span is the first batch's child).</summary>
    public readonly record struct HandedBatch(ConsumeContext<Batch<MeteringFrame>> Batch, System.Diagnostics.ActivityContext Trace);

    /// <summary>Folds the partition's batches that waited together (<see cref="GroupCommit{TBatch}"/>) as one.</summary>
    async Task FoldAsync(IReadOnlyList<HandedBatch> group)
    {
        List<ConsumeContext<MeteringFrame>> messages = [.. group.SelectMany(b => b.Batch.Message)];
        var queue = Queue(group[0].Batch);
        using var span = StartSpan(messages, group[0].Trace);
        var ct = group[0].Batch.CancellationToken;
        var now = clock.GetUtcNow();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        List<QuarantinedMetering> quarantined = [];
        List<(MeteringFrame Frame, string? SentBy)> frames = [];
        List<Piece> pieces = [];
        foreach (var message in messages)
        {
            var frame = message.Message;
            var (reason, problem) = EnvelopeProblem(message) ?? (QuarantineReason.MalformedMessage, frame.Problem);
            if (problem is null) frames.Add((frame, BrokerUser(message)));
            else if (frame is { ProducerId.Length: > 0, Sequence: > 0 })
                pieces.Add(new Piece(frame, Quarantine.Message(reason, problem, frame, Excerpt(message), now)));
            else quarantined.Add(Quarantine.Message(reason, problem, frame, Excerpt(message), now)); // nothing to dedupe by
        }

        var partition = partitions.Of(queue);
        using var entered = await partition.EnterAsync(ct);
        await using var session = store.LightweightSession();
        if (session.Listeners.FirstOrDefault(l => l is PushAfterCommit) is { } reading) session.Listeners.Remove(reading); // pushed below, without reading back
        await session.BeginTransactionAsync(ct);
        var nodes = await LoadNodesAsync(session, frames, ct);
        foreach (var (frame, sentBy) in frames)
        {
            if (!nodes.TryGetValue(frame.ProducerId, out var node))
                pieces.Add(new Piece(frame, Quarantine.Message(QuarantineReason.UnknownProducer, $"producer '{frame.ProducerId}' is not a registered serving node", frame, null, now)));
            else if (node.Revoked)
                pieces.Add(new Piece(frame, Quarantine.Message(QuarantineReason.RevokedProducer, $"serving node '{frame.ProducerId}' was revoked", frame, null, now)));
            else if (!node.SentBy(sentBy))
                pieces.Add(new Piece(frame, Quarantine.Message(QuarantineReason.UnauthenticatedProducer,
                    $"producer '{frame.ProducerId}' publishes as broker user '{node.BrokerUser}'; this message {(sentBy is null ? "carried no user id" : $"came from broker user '{sentBy}'")}", frame, null, now)));
            else
                pieces.Add(new Piece(frame, null));
        }

        var keys = new Dictionary<(string, long, string), long>(pieces.Count);
        foreach (var piece in pieces) keys.TryAdd(piece.Key, piece.ContentHash);
        var claims = await AppliedBatches.ClaimAsync(session, keys, now, ct);

        var byDeployment = new Dictionary<string, List<ProducerBatch>>();
        var claimed = new Dictionary<(string, long, string), long>(); // what this batch counted per key: its content hash
        var duplicates = 0;
        foreach (var piece in pieces)
        {
            var hash = piece.ContentHash;
            var conflicting = claimed.TryGetValue(piece.Key, out var countedHash) ? countedHash != hash : claims[piece.Key].Conflicts(hash);
            if (conflicting && piece.Refusal is null)
            {
                quarantined.Add(Quarantine.Message(QuarantineReason.ConflictingReplay,
                    $"producer '{piece.Frame.ProducerId}' already used sequence {piece.Frame.Sequence} with other records; these were not counted",
                    piece.Frame, null, now) with { DeploymentId = piece.Frame.Records.DistinctBy(r => r.DeploymentId).Count() == 1 ? piece.Frame.Records[0].DeploymentId : null });
                continue;
            }
            if (!claims[piece.Key].Fresh || !claimed.TryAdd(piece.Key, hash)) // counted before, or twice in this batch
            {
                duplicates++;
                continue;
            }
            if (piece.Refusal is not null)
            {
                quarantined.Add(piece.Refusal);
                continue;
            }
            var records = piece.Frame.Records;
            for (var position = 0; position < records.Count; position++)
            {
                var record = records[position];
                if (record.Problem is not null) quarantined.Add(Quarantine.Record(QuarantineReason.InvalidRecord, record.Problem, piece.Frame, record, now));
                else if (record.FinishedAt > now + FutureTolerance) quarantined.Add(Quarantine.Record(QuarantineReason.TimestampInFuture, $"finishedAt {record.FinishedAt:O} is in the future", piece.Frame, record, now));
                else if (record.FinishedAt < now - BackdatingWindow)
                    quarantined.Add(Quarantine.Record(QuarantineReason.TimestampTooOld, $"finishedAt {record.FinishedAt:O} is more than {BackdatingWindow.TotalDays:0} days before it was metered", piece.Frame, record, now));
                else if (record.PhaseProblemFrom(nodes[piece.Frame.ProducerId]) is { } wrongPhase)
                    quarantined.Add(Quarantine.Record(QuarantineReason.WrongPhase, wrongPhase, piece.Frame, record, now));
                else Add(piece.Frame, record.DeploymentId, position);
            }
        }

        var (deployments, meters) = await partition.ReadAsync(session, [.. byDeployment.Keys], ct);
        long counted = 0, throttles = 0;
        var throttling = false; // a throttled deployment in the batch: the lifter reads its meter, so this batch writes them
        List<(Deployment Read, DeploymentEvent Transition, Deployment Applied)> transitioned = [];
        List<UsageMetered> usage = [];
        List<(DeploymentMeter, long)> moved = [];
        foreach (var (deploymentId, batches) in byDeployment)
        {
            if (!deployments.TryGetValue(deploymentId, out var snapshot))
            {
                Refuse(batches, QuarantineReason.UnknownDeployment, $"no deployment '{deploymentId}'");
                continue;
            }
            var meter = meters.GetValueOrDefault(deploymentId);
            var deployment = meter?.On(snapshot) ?? snapshot;
            var allowed = Allowed(batches, deployment);
            throttling |= deployment.Throttled;
            if (Meter.Decide(deployment, allowed, now) is not { } decision) continue;
            usage.Add(decision.Usage);
            counted += decision.Usage.Tokens.Records;
            if (decision.Transition is { } transition)
            {
                throttling = true;
                transitioned.Add((snapshot, transition, decision.Applied(deployment)));
                if (transition is DeploymentThrottled) throttles++;
            }
            moved.Add((decision.MeterOf(deployment), meter?.Version ?? 0));
        }
        // A batch that changes nothing (all duplicates) leaves the checkpoint to the next: Marten commits only a unit of work that holds something.
        var checkpoint = partition.CheckpointDue(Backlogged(messages, options.BacklogAfter ?? options.BatchTimeLimit + TimeSpan.FromMilliseconds(20)), throttling)
            && (usage.Count > 0 || quarantined.Count > 0);
        Guid? appended = null;
        List<(AdmissionLimitChanged, IReadOnlyList<string>)> limits;
        try
        {
            // One event for the whole batch: what the log and its read models do per batch does not grow with the deployments in it.
            if (usage.Count > 0) appended = AppendUsage(session, partition.Stream, new UsageBatchMetered(usage));
            limits = await AppendTransitionsAsync(session, transitioned, now, ct);
            if (checkpoint) await partition.CheckpointAsync(session.Connection!, store.Options.Events.DatabaseSchemaName, moved, appended, ct);
            if (quarantined.Count > 0) session.Store<QuarantinedMetering>(quarantined);
            await session.SaveChangesAsync(ct);
        }
        catch
        {
            partition.Forget();
            throw;
        }
        partition.Committed(deployments, moved, transitioned.Select(t => t.Read.Id), checkpoint, appended);
        if (limits.Count > 0) push.PublishInBackground(limits);

        metrics.Committed(messages.Count, counted, duplicates, throttles, quarantined, System.Diagnostics.Stopwatch.GetElapsedTime(started));
        span?.SetTag("throughput.records", counted).SetTag("throughput.usage_events", usage.Count).SetTag("throughput.usage_stream", DeploymentMeters.PartitionStream(queue)).SetTag("throughput.usage_event_id", appended?.ToString())
            .SetTag("throughput.quarantined", quarantined.Count);

        // A message's records, grouped per deployment in its order: one producer batch per (message, deployment).
        void Add(MeteringFrame frame, string deploymentId, int position)
        {
            if (!byDeployment.TryGetValue(deploymentId, out var batches)) byDeployment[deploymentId] = batches = [];
            if (batches is [.., var last] && last.ProducerId == frame.ProducerId && last.Sequence == frame.Sequence) ((RecordsAt)last.Records).Add(position);
            else batches.Add(new ProducerBatch(frame.ProducerId, frame.Sequence, new RecordsAt(frame.Records, position)));
        }

        void Refuse(IEnumerable<ProducerBatch> refused, QuarantineReason reason, string detail)
        {
            foreach (var batch in refused)
            {
                var frame = FrameOf(batch);
                foreach (var record in batch.Records) quarantined.Add(Quarantine.Record(reason, detail, frame, record, now));
            }
        }

        // The batches the deployment may be metered from, each without the records it cannot be billed for; the rest
        // quarantined. Copies nothing when nothing is refused, as nearly always: there is one call per deployment.
        List<ProducerBatch> Allowed(List<ProducerBatch> batches, Deployment deployment)
        {
            List<ProducerBatch>? allowed = null; // a copy, once a batch is left out or trimmed
            for (var i = 0; i < batches.Count; i++)
            {
                var batch = batches[i];
                ProducerBatch? kept = null;
                if (nodes[batch.ProducerId].MayServe(deployment)) kept = Admissible(batch, deployment);
                else Refuse([batch], QuarantineReason.NotServedByProducer, $"deployment '{deployment.Id}' (tenant {deployment.TenantId}, region {deployment.Region}) is outside the producer's registered scope");
                if (allowed is null && ReferenceEquals(kept, batch)) continue;
                allowed ??= batches[..i];
                if (kept is not null) allowed.Add(kept);
            }
            return allowed ?? batches;
        }

        MeteringFrame FrameOf(ProducerBatch batch) => frames.First(f => f.Frame.ProducerId == batch.ProducerId && f.Frame.Sequence == batch.Sequence).Frame;

        // The batch without records the deployment cannot be billed for (spilled with spillover off, finished after its
        // release, spilled past a spend cap, naming an adapter it does not hold); null when none is left. Copies only when something is refused.
        ProducerBatch? Admissible(ProducerBatch batch, Deployment deployment)
        {
            List<MeteredRecord>? kept = null;
            for (var i = 0; i < batch.Records.Count; i++)
            {
                var record = batch.Records[i];
                var refusal = !deployment.Served(record.FinishedAt)
                    ? (QuarantineReason.ReleasedDeployment, $"deployment '{deployment.Id}' was released at {deployment.ReleasedAt:O}, before this record finished")
                    : record.Spilled && !deployment.MaySpill(record.FinishedAt)
                        ? (QuarantineReason.SpilloverOff, $"deployment '{deployment.Id}' has spillover off; a spilled record is not billed")
                    : record.Spilled && deployment.SpilloverCapped(record.FinishedAt)
                        ? (QuarantineReason.SpilloverCapReached, $"deployment '{deployment.Id}' reached its spillover spend cap for {deployment.SpilloverCappedIn}; a spilled record is not billed")
                        : !deployment.Holds(record.AdapterId)
                            ? (QuarantineReason.UnknownAdapter, record.AdapterId is null
                                ? $"deployment '{deployment.Id}' serves adapters; the record names none"
                                : $"adapter '{record.AdapterId}' is not one of deployment '{deployment.Id}''s adapters")
                            : ((QuarantineReason, string)?)null;
                if (refusal is { } r)
                {
                    kept ??= [.. batch.Records.Take(i)];
                    quarantined.Add(Quarantine.Record(r.Item1, r.Item2, FrameOf(batch), record, now));
                }
                else kept?.Add(record);
            }
            return kept is null ? batch : kept.Count == 0 ? null : batch with { Records = kept };
        }
    }

    /// <summary>
    /// One span per transaction (a consumer batch, or the batches folded together), a child of the first batch's consume span
    /// and linked to each message's publish (its <c>traceparent</c> header): a transaction folds messages of many traces, so
    /// no single publish is its parent.
    /// </summary>
    static System.Diagnostics.Activity? StartSpan(List<ConsumeContext<MeteringFrame>> messages, System.Diagnostics.ActivityContext parent)
    {
        if (!MeteringMetrics.Tracing.HasListeners()) return null;
        List<System.Diagnostics.ActivityLink> links = [];
        foreach (var message in messages)
        {
            if (message.ReceiveContext.TryGetPayload<RabbitMqBasicConsumeContext>(out var delivery)
                && delivery.Properties.Headers?.TryGetValue(MeteringTopology.TraceParentHeader, out var header) == true
                && System.Diagnostics.ActivityContext.TryParse(header is byte[] bytes ? Encoding.UTF8.GetString(bytes) : header as string, null, out var publish))
                links.Add(new System.Diagnostics.ActivityLink(publish));
        }
        return MeteringMetrics.Tracing.StartActivity(System.Diagnostics.ActivityKind.Consumer, parentContext: parent, links: links, name: "metering consume")
            ?.SetTag("messaging.system", "rabbitmq").SetTag("messaging.batch.message_count", messages.Count);
    }

    /// <summary>Metering is JSON with the contract's version header; anything else is refused whole, before its body counts.</summary>
    static (QuarantineReason, string?)? EnvelopeProblem(ConsumeContext<MeteringFrame> message)
    {
        if (!message.ReceiveContext.TryGetPayload<RabbitMqBasicConsumeContext>(out var delivery)) return null;
        var properties = delivery.Properties;
        if (!string.Equals(properties.ContentType, MeteringTopology.ContentType, StringComparison.OrdinalIgnoreCase))
            return (QuarantineReason.WrongContentType, $"content type '{properties.ContentType}' is not {MeteringTopology.ContentType}");
        var version = properties.Headers?.TryGetValue(MeteringTopology.VersionHeader, out var v) == true ? v : null;
        // Clients in other languages pick the AMQP field type: any integer type, a float or the text "1" will do.
        var current = MeteringTopology.CurrentVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return version switch
        {
            null => (QuarantineReason.MissingVersionHeader, $"no '{MeteringTopology.VersionHeader}' header"),
            byte[] text when Encoding.UTF8.GetString(text) == current => null,
            string text when text == current => null,
            sbyte or byte or short or ushort or int or uint or long or ulong or float or double or decimal
                when Convert.ToDouble(version, System.Globalization.CultureInfo.InvariantCulture) == MeteringTopology.CurrentVersion => null,
            _ => (QuarantineReason.MissingVersionHeader, $"'{MeteringTopology.VersionHeader}' header is not {MeteringTopology.CurrentVersion}"),
        };
    }

    /// <summary>The AMQP user-id property, which the broker has checked against the publishing connection's user.</summary>
    static string? BrokerUser(ConsumeContext<MeteringFrame> message) =>
        message.ReceiveContext.TryGetPayload<RabbitMqBasicConsumeContext>(out var delivery) ? delivery.Properties.UserId : null;

    /// <summary>The batch's serving nodes by producer id: looked up per record, so without building a stream id each time.</summary>
    static async Task<Dictionary<string, ServingNode>> LoadNodesAsync(IDocumentSession session, List<(MeteringFrame Frame, string? SentBy)> frames, CancellationToken ct)
    {
        var ids = frames.Select(f => ServingNode.StreamId(f.Frame.ProducerId)).Distinct().ToArray();
        return ids.Length == 0 ? [] : (await session.LoadManyAsync<ServingNode>(ct, ids)).ToDictionary(n => n.ProducerId);
    }

    /// <summary>
    /// A batch (or group) whose oldest message waited in this host longer than <paramref name="after"/> (by default the batch
    /// window and a margin for the host's own pauses) queued behind the previous one: the partition is behind its queue.
    /// Measured on this host's clock from when the message was received, so no node's clock enters it.
    /// </summary>
    static bool Backlogged(List<ConsumeContext<MeteringFrame>> messages, TimeSpan after) =>
        messages.Max(m => m.ReceiveContext.ElapsedTime) > after;

    /// <summary>Appends the batch's usage event under an id taken here, which a checkpoint in the same transaction names.</summary>
    static Guid AppendUsage(IDocumentSession session, string stream, UsageBatchMetered usage)
    {
        var e = session.Events.Append(stream, usage).Events[^1];
        if (e.Id == Guid.Empty) e.Id = Guid.CreateVersion7();
        return e.Id;
    }

    /// <summary>
    /// Throttling and lifting change what a deployment admits: they go to its own stream, which its snapshot and the admission
    /// feed follow, over the version the decision read, so a release or resize committed since fails the batch (decided again
    /// on redelivery) instead of being overtaken. Fetched for writing, with their tenants, in one round trip, only for these
    /// few deployments. Returns the limits to push once committed: the decided state and the tenant read in this transaction,
    /// so they carry the version a read after the commit would.
    /// </summary>
    static async Task<List<(AdmissionLimitChanged, IReadOnlyList<string>)>> AppendTransitionsAsync(IDocumentSession session,
        List<(Deployment Read, DeploymentEvent Transition, Deployment Applied)> transitioned, DateTimeOffset now, CancellationToken ct)
    {
        if (transitioned.Count == 0) return [];
        var batch = session.CreateBatchQuery();
        var pending = transitioned.Select(t => (t.Read, t.Transition, t.Applied, Stream: batch.Events.FetchForWriting<Deployment>(t.Read.Id))).ToList();
        var tenants = batch.LoadMany<Tenant>().ById([.. transitioned.Select(t => t.Read.TenantId).Distinct()]);
        await batch.Execute(ct);
        var tenantOf = (await tenants).ToDictionary(t => t.Id);
        List<(AdmissionLimitChanged, IReadOnlyList<string>)> limits = [];
        foreach (var (read, transition, applied, fetching) in pending)
        {
            var stream = await fetching;
            if (stream.Aggregate?.AdmissionRevision != read.AdmissionRevision)
                throw new JasperFx.ConcurrencyException($"deployment {read.Id} changed while its usage was decided", typeof(Deployment), read.Id);
            stream.AppendOne(transition);
            limits.Add((AdmissionLimits.Of(applied, tenantOf.GetValueOrDefault(applied.TenantId), now), applied.ServedRegions()));
        }
        return limits;
    }

    /// <summary>The partition queue the batch came from: its usage stream's name.</summary>
    static string Queue(ConsumeContext<Batch<MeteringFrame>> context) =>
        context.Message[0].ReceiveContext.InputAddress is { } address ? address.Segments[^1] : "unknown";

    static string Excerpt(ConsumeContext<MeteringFrame> message)
    {
        var body = message.ReceiveContext.Body.GetBytes();
        return Encoding.UTF8.GetString(body, 0, Math.Min(body.Length, Quarantine.ExcerptLength));
    }
}
