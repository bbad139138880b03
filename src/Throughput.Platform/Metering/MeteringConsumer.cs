using System.Text;
using JasperFx.Events;
using Marten;
using MassTransit;
using Throughput.Admission;
using Throughput.Deployments;

namespace Throughput.Metering;

/// <summary>
/// Folds a consumer batch of metering messages from one partition into deployment streams: one usage event per
/// deployment, in one PostgreSQL transaction with the dedupe claims and the quarantine of whatever was refused.
/// The partition's single active consumer makes this the deployments' only writer; the claims make redeliveries,
/// duplicate publishes and out-of-order arrivals count once.
/// </summary>
public sealed class MeteringConsumer(IDocumentStore store, TimeProvider clock, MeteringMetrics metrics, AdmissionPush push) : IConsumer<Batch<MeteringFrame>>
{
    /// <summary>Clock skew tolerated between serving nodes and the platform before a record's times are refused.</summary>
    static readonly TimeSpan FutureTolerance = TimeSpan.FromMinutes(5);

    /// <summary>The ledger key of a message-level refusal (no deployment).</summary>
    const string WholeMessage = "";

    /// <summary>One claimable piece of a message: its records for one deployment, or the whole message when refused.</summary>
    sealed record Piece(MeteringFrame Frame, string DeploymentId, List<MeteredRecord> Records, QuarantinedMetering? Refusal)
    {
        public (string, long, string) Key => (Frame.ProducerId, Frame.Sequence, DeploymentId);
    }

    public async Task Consume(ConsumeContext<Batch<MeteringFrame>> context)
    {
        var ct = context.CancellationToken;
        var now = clock.GetUtcNow();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        List<QuarantinedMetering> quarantined = [];
        List<(MeteringFrame Frame, string? SentBy)> frames = [];
        List<Piece> pieces = [];
        foreach (var message in context.Message)
        {
            var frame = message.Message;
            if (frame.Problem is null) frames.Add((frame, BrokerUser(message)));
            else if (frame is { ProducerId.Length: > 0, Sequence: > 0 })
                pieces.Add(new Piece(frame, WholeMessage, [], Quarantine.Message(QuarantineReason.MalformedMessage, frame.Problem, frame, Excerpt(message), now)));
            else quarantined.Add(Quarantine.Message(QuarantineReason.MalformedMessage, frame.Problem, frame, Excerpt(message), now)); // nothing to dedupe by
        }

        await using var session = store.LightweightSession();
        await session.BeginTransactionAsync(ct);
        var nodes = await LoadNodesAsync(session, frames, ct);
        foreach (var (frame, sentBy) in frames)
        {
            if (!nodes.TryGetValue(ServingNode.StreamId(frame.ProducerId), out var node))
                pieces.Add(new Piece(frame, WholeMessage, [], Quarantine.Message(QuarantineReason.UnknownProducer, $"producer '{frame.ProducerId}' is not a registered serving node", frame, null, now)));
            else if (node.Revoked)
                pieces.Add(new Piece(frame, WholeMessage, [], Quarantine.Message(QuarantineReason.RevokedProducer, $"serving node '{frame.ProducerId}' was revoked", frame, null, now)));
            else if (!node.SentBy(sentBy))
                pieces.Add(new Piece(frame, WholeMessage, [], Quarantine.Message(QuarantineReason.UnauthenticatedProducer,
                    $"producer '{frame.ProducerId}' publishes as broker user '{node.BrokerUser}'; this message {(sentBy is null ? "carried no user id" : $"came from broker user '{sentBy}'")}", frame, null, now)));
            else
                pieces.AddRange(frame.Records.GroupBy(r => r.DeploymentId).Select(g => new Piece(frame, g.Key, [.. g], null)));
        }

        var fresh = await AppliedBatches.ClaimAsync(session, [.. pieces.Select(p => p.Key).Distinct()], now, ct);
        var byDeployment = new Dictionary<string, List<ProducerBatch>>();
        var claimed = new HashSet<(string, long, string)>();
        foreach (var piece in pieces)
        {
            if (!fresh.Contains(piece.Key) || !claimed.Add(piece.Key)) continue; // counted before, or twice in this batch
            if (piece.Refusal is not null)
            {
                quarantined.Add(piece.Refusal);
                continue;
            }
            List<MeteredRecord> good = [];
            foreach (var record in piece.Records)
            {
                if (record.Problem is not null) quarantined.Add(Quarantine.Record(QuarantineReason.InvalidRecord, record.Problem, piece.Frame, record, now));
                else if (record.FinishedAt > now + FutureTolerance) quarantined.Add(Quarantine.Record(QuarantineReason.TimestampInFuture, $"finishedAt {record.FinishedAt:O} is in the future", piece.Frame, record, now));
                else good.Add(record);
            }
            if (good.Count == 0) continue;
            if (!byDeployment.TryGetValue(piece.DeploymentId, out var batches)) byDeployment[piece.DeploymentId] = batches = [];
            batches.Add(new ProducerBatch(piece.Frame.ProducerId, piece.Frame.Sequence, good));
        }

        var streams = await FetchForWritingAsync(session, byDeployment.Keys, ct);
        long counted = 0, throttles = 0;
        List<string> admissionChanged = [];
        foreach (var (deploymentId, batches) in byDeployment)
        {
            var stream = streams[deploymentId];
            if (stream.Aggregate is not { } deployment)
            {
                Refuse(batches, QuarantineReason.UnknownDeployment, $"no deployment '{deploymentId}'");
                continue;
            }
            if (deployment.Status == DeploymentStatus.Released)
            {
                Refuse(batches, QuarantineReason.ReleasedDeployment, $"deployment '{deploymentId}' is released");
                continue;
            }
            var allowed = batches.Where(b => nodes[ServingNode.StreamId(b.ProducerId)].MayServe(deployment)).ToList();
            Refuse(batches.Except(allowed), QuarantineReason.NotServedByProducer, $"deployment '{deploymentId}' (tenant {deployment.TenantId}, region {deployment.Region}) is outside the producer's registered scope");
            var events = Meter.Decide(deployment, allowed, now);
            if (events.Length == 0) continue;
            stream.AppendMany(events);
            counted += ((UsageMetered)events[0]).Records;
            throttles += events.Count(e => e is DeploymentThrottled);
            if (events.Length > 1) admissionChanged.Add(deploymentId);
        }
        if (quarantined.Count > 0) session.Store<QuarantinedMetering>(quarantined);
        await session.SaveChangesAsync(ct);

        metrics.Committed(context.Message.Length, counted, pieces.Count - fresh.Count, throttles, quarantined, System.Diagnostics.Stopwatch.GetElapsedTime(started));
        if (admissionChanged.Count > 0) await push.TryPublishCurrentAsync(session, admissionChanged, ct);

        void Refuse(IEnumerable<ProducerBatch> refused, QuarantineReason reason, string detail)
        {
            foreach (var batch in refused)
            {
                var (frame, _) = frames.First(f => f.Frame.ProducerId == batch.ProducerId && f.Frame.Sequence == batch.Sequence);
                foreach (var record in batch.Records) quarantined.Add(Quarantine.Record(reason, detail, frame, record, now));
            }
        }
    }

    /// <summary>The AMQP user-id property, which the broker has checked against the publishing connection's user.</summary>
    static string? BrokerUser(ConsumeContext<MeteringFrame> message) =>
        message.ReceiveContext.TryGetPayload<RabbitMqBasicConsumeContext>(out var delivery) ? delivery.Properties.UserId : null;

    static async Task<Dictionary<string, ServingNode>> LoadNodesAsync(IDocumentSession session, List<(MeteringFrame Frame, string? SentBy)> frames, CancellationToken ct)
    {
        var ids = frames.Select(f => ServingNode.StreamId(f.Frame.ProducerId)).Distinct().ToArray();
        return ids.Length == 0 ? [] : (await session.LoadManyAsync<ServingNode>(ct, ids)).ToDictionary(n => n.Id);
    }

    /// <summary>One round trip for every deployment of the batch; each stream then checks its version on commit.</summary>
    static async Task<Dictionary<string, IEventStream<Deployment>>> FetchForWritingAsync(IDocumentSession session, IEnumerable<string> ids, CancellationToken ct)
    {
        var batch = session.CreateBatchQuery();
        var pending = ids.ToDictionary(id => id, id => batch.Events.FetchForWriting<Deployment>(id));
        if (pending.Count > 0) await batch.Execute(ct);
        var streams = new Dictionary<string, IEventStream<Deployment>>(pending.Count);
        foreach (var (id, task) in pending) streams[id] = await task;
        return streams;
    }

    static string Excerpt(ConsumeContext<MeteringFrame> message)
    {
        var body = message.ReceiveContext.Body.GetBytes();
        return Encoding.UTF8.GetString(body, 0, Math.Min(body.Length, Quarantine.ExcerptLength));
    }
}
