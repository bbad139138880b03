using Throughput.Benchmarks.Harness;
using Throughput.Serving;

namespace Throughput.Benchmarks.Metering;

/// <summary>
/// The run's own metering exchange and partition queues (<c>bench.metering.{run}</c>, <c>….p{n}</c>), and what
/// MassTransit adds beside each queue: an exchange of the queue's name and, once used, <c>_error</c> and <c>_skipped</c>.
/// </summary>
public sealed record BenchTopology(string RunId, int Partitions)
{
    public string Exchange => $"bench.metering.{RunId}";

    public string QueuePrefix => Exchange + ".p";

    public IEnumerable<string> PartitionQueues => Enumerable.Range(0, Partitions).Select(p => QueuePrefix + p);

    /// <summary>The event streams the platform appends this topology's usage to: one per partition queue (its DeploymentMeters.PartitionStream).</summary>
    public IReadOnlyList<string> UsageStreams => [.. PartitionQueues.Select(q => "meter:" + q)];

    /// <summary>The host settings that make a platform host consume this topology and no other.</summary>
    public Dictionary<string, string> HostSettings() => new(StringComparer.Ordinal)
    {
        ["Metering__Exchange"] = Exchange,
        ["Metering__QueuePrefix"] = QueuePrefix,
        ["Metering__Partitions"] = Partitions.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>Deletes what the run declared; call after the host has stopped, or it declares them again.</summary>
    public async Task RemoveAsync(BrokerSettings? broker = null)
    {
        var queues = PartitionQueues.SelectMany(q => new[] { q, q + "_error", q + "_skipped" }).ToList();
        await using var rabbit = await RabbitQueues.ConnectAsync(broker ?? Services.PlatformBroker(), CancellationToken.None);
        await rabbit.DeleteAsync(queues, [Exchange, .. queues]);
    }
}
