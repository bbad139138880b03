using Marten;
using MassTransit;
using Throughput.Contracts;
using Throughput.Deployments;

namespace Throughput.Metering;

/// <summary>Folds a consumer batch of metering messages into deployment streams: one usage event per deployment, one transaction.</summary>
public sealed class MeteringConsumer(IDocumentStore store, TimeProvider clock) : IConsumer<Batch<MeteringBatch>>
{
    public async Task Consume(ConsumeContext<Batch<MeteringBatch>> context)
    {
        var now = clock.GetUtcNow();
        var byDeployment = context.Message
            .SelectMany(m => m.Message.Records.Select(r => (m.Message.ProducerId, m.Message.Sequence, Record: r)))
            .GroupBy(x => x.Record.DeploymentId);

        await using var session = store.LightweightSession();
        foreach (var group in byDeployment)
        {
            var producers = group.GroupBy(x => x.ProducerId)
                .Select(p => new ProducerRange(p.Key, p.Min(x => x.Sequence), p.Max(x => x.Sequence)))
                .ToList();
            var stream = await session.Events.FetchForWriting<Deployment>(group.Key, context.CancellationToken);
            if (stream.Aggregate is null) continue;
            stream.AppendOne(new UsageMetered(group.Key, producers, group.LongCount(),
                group.Sum(x => x.Record.PromptTokens), group.Sum(x => x.Record.CachedTokens), group.Sum(x => x.Record.OutputTokens), now));
        }
        await session.SaveChangesAsync(context.CancellationToken);
    }
}
