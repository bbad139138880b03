using System.Text;
using Marten;
using JasperFx.Events;
using MassTransit;
using Throughput.Deployments;

namespace Throughput.Metering;

/// <summary>
/// Folds a consumer batch of metering messages from one partition into deployment streams: one usage event per
/// deployment, deduplicated against the producers' high-water marks, all in one PostgreSQL transaction with the
/// quarantine of whatever was refused. The partition's single active consumer makes this the deployment's only writer.
/// </summary>
public sealed class MeteringConsumer(IDocumentStore store, TimeProvider clock, MeteringMetrics metrics) : IConsumer<Batch<MeteringFrame>>
{
    /// <summary>Clock skew tolerated between serving nodes and the platform before a record's times are refused.</summary>
    static readonly TimeSpan FutureTolerance = TimeSpan.FromMinutes(5);

    public async Task Consume(ConsumeContext<Batch<MeteringFrame>> context)
    {
        var ct = context.CancellationToken;
        var now = clock.GetUtcNow();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        List<QuarantinedMetering> quarantined = [];
        var frames = new List<MeteringFrame>(context.Message.Length);
        foreach (var message in context.Message)
        {
            var frame = message.Message;
            if (frame.Problem is null) frames.Add(frame);
            else quarantined.Add(Quarantine.Message(QuarantineReason.MalformedMessage, frame.Problem, frame, Excerpt(message), now));
        }

        await using var session = store.LightweightSession();
        var nodes = await LoadNodesAsync(session, frames, ct);
        var byDeployment = new Dictionary<string, List<ProducerBatch>>();
        foreach (var frame in frames)
        {
            if (!nodes.ContainsKey(ServingNode.StreamId(frame.ProducerId)))
            {
                quarantined.Add(Quarantine.Message(QuarantineReason.UnknownProducer, $"producer '{frame.ProducerId}' is not a registered serving node", frame, null, now));
                continue;
            }
            foreach (var group in frame.Records.GroupBy(r => r.DeploymentId))
            {
                List<MeteredRecord> good = [];
                foreach (var record in group)
                {
                    if (record.Problem is not null) quarantined.Add(Quarantine.Record(QuarantineReason.InvalidRecord, record.Problem, frame, record, now));
                    else if (record.FinishedAt > now + FutureTolerance) quarantined.Add(Quarantine.Record(QuarantineReason.TimestampInFuture, $"finishedAt {record.FinishedAt:O} is in the future", frame, record, now));
                    else good.Add(record);
                }
                if (good.Count == 0) continue;
                if (!byDeployment.TryGetValue(group.Key, out var batches)) byDeployment[group.Key] = batches = [];
                batches.Add(new ProducerBatch(frame.ProducerId, frame.Sequence, good));
            }
        }

        var streams = await FetchForWritingAsync(session, byDeployment.Keys, ct);
        long counted = 0, duplicates = 0, throttles = 0;
        foreach (var (deploymentId, batches) in byDeployment)
        {
            var stream = streams[deploymentId];
            var deployment = stream.Aggregate;
            if (deployment is null)
            {
                Refuse(batches, QuarantineReason.UnknownDeployment, $"no deployment '{deploymentId}'");
                continue;
            }
            var fresh = batches.Where(b => b.Sequence > deployment.WatermarkOf(b.ProducerId)).ToList();
            duplicates += batches.Count - fresh.Count;
            if (deployment.Status == DeploymentStatus.Released)
            {
                Refuse(fresh, QuarantineReason.ReleasedDeployment, $"deployment '{deploymentId}' is released");
                continue;
            }
            var allowed = fresh.Where(b => nodes[ServingNode.StreamId(b.ProducerId)].MayServe(deployment)).ToList();
            Refuse(fresh.Except(allowed), QuarantineReason.NotServedByProducer, $"deployment '{deploymentId}' (tenant {deployment.TenantId}, region {deployment.Region}) is outside the producer's registered scope");
            var events = Meter.Decide(deployment, allowed, now);
            if (events.Length == 0) continue;
            stream.AppendMany(events);
            counted += ((UsageMetered)events[0]).Records;
            throttles += events.Count(e => e is DeploymentThrottled);
        }
        if (quarantined.Count > 0) session.Store<QuarantinedMetering>(quarantined);
        await session.SaveChangesAsync(ct);

        metrics.Committed(context.Message.Length, counted, duplicates, throttles, quarantined, System.Diagnostics.Stopwatch.GetElapsedTime(started));

        void Refuse(IEnumerable<ProducerBatch> batches, QuarantineReason reason, string detail)
        {
            foreach (var batch in batches)
            {
                var frame = frames.First(f => f.ProducerId == batch.ProducerId && f.Sequence == batch.Sequence);
                foreach (var record in batch.Records) quarantined.Add(Quarantine.Record(reason, detail, frame, record, now));
            }
        }
    }

    static async Task<Dictionary<string, ServingNode>> LoadNodesAsync(IDocumentSession session, List<MeteringFrame> frames, CancellationToken ct)
    {
        var ids = frames.Select(f => ServingNode.StreamId(f.ProducerId)).Distinct().ToArray();
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
