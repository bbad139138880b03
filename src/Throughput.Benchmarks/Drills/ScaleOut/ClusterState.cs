using System.Globalization;
using System.Text;

namespace Throughput.Benchmarks.Drills.ScaleOut;

/// <summary>A consumer of a partition queue: the broker node (short name) its channel is on, and its connection's client-provided name ("-" when that node is down).</summary>
public sealed record PartitionConsumer(int Partition, bool Active, string Node, string Connection)
{
    /// <summary>The platform host behind the connection (<c>throughput-metering:{Host:Name}</c>), or the connection name itself.</summary>
    public string Host => Connection.StartsWith(ConnectionPrefix, StringComparison.Ordinal) ? Connection[ConnectionPrefix.Length..] : Connection;

    /// <summary>The broker could not reach the consumer's channel (its node is down); the connection column then holds the reason.</summary>
    public bool Gone => Connection.StartsWith('-');

    internal const string ConnectionPrefix = "throughput-metering:";
}

/// <summary>A client connection: the broker node it is on and its client-provided name.</summary>
public sealed record BrokerConnection(string Node, string Name)
{
    /// <summary>A serving node's metering publisher (<c>throughput-serving:{producer}</c>).</summary>
    public bool Publisher => Name.StartsWith("throughput-serving:", StringComparison.Ordinal);

    public bool MeteringHost => Name.StartsWith(PartitionConsumer.ConnectionPrefix, StringComparison.Ordinal);

    public string Label => Publisher ? "SDK " + Name["throughput-serving:".Length..] : MeteringHost ? Name[PartitionConsumer.ConnectionPrefix.Length..] : Name;
}

/// <summary>A partition queue's replicas: the node of its leader, its members, and those online (short node names).</summary>
public sealed record PartitionReplicas(int Partition, string Type, string Leader, IReadOnlyList<string> Members, IReadOnlyList<string> Online);

/// <summary>
/// The run's partition queues as the broker sees them at one moment: who consumes each (and which consumer is the single
/// active one) and where its quorum replicas are. Parsed from <see cref="BrokerCluster"/>'s rabbitmqctl eval output.
/// </summary>
public sealed record ClusterState(DateTimeOffset At, string AskedNode, IReadOnlyList<PartitionConsumer> Consumers, IReadOnlyList<PartitionReplicas> Queues,
    IReadOnlyList<BrokerConnection> Connections)
{
    /// <summary>
    /// Reads lines <c>consumer\tqueue\tactive\tnode\tconnection</c> and <c>queue\tqueue\ttype\tleader\tmembers\tonline</c>, keeping
    /// the run's queues, and <c>connection\tnode\tname</c>.
    /// </summary>
    public static ClusterState Parse(string output, string queuePrefix, string askedNode, DateTimeOffset at)
    {
        List<PartitionConsumer> consumers = [];
        List<PartitionReplicas> queues = [];
        List<BrokerConnection> connections = [];
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var f = line.Split('\t');
            if (f is ["connection", var node, var name]) connections.Add(new BrokerConnection(NodeName(node), name));
            if (f.Length < 5 || !f[1].StartsWith(queuePrefix, StringComparison.Ordinal)
                || !int.TryParse(f[1].AsSpan(queuePrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var partition)) continue;
            if (f[0] == "consumer") consumers.Add(new PartitionConsumer(partition, f[2] == "true", NodeName(f[3]), f[4]));
            else if (f[0] == "queue" && f.Length >= 6) queues.Add(new PartitionReplicas(partition, f[2], NodeName(f[3]), Nodes(f[4]), Nodes(f[5])));
        }
        return new ClusterState(at, askedNode, [.. consumers.OrderBy(c => c.Partition).ThenByDescending(c => c.Active)], [.. queues.OrderBy(q => q.Partition)],
            [.. connections.OrderBy(c => c.Node, StringComparer.Ordinal).ThenBy(c => c.Name, StringComparer.Ordinal)]);
    }

    public IEnumerable<int> Partitions => Queues.Select(q => q.Partition);

    /// <summary>The partition's single active consumer, if it has one the broker can still reach.</summary>
    public PartitionConsumer? ActiveOf(int partition) => Consumers.FirstOrDefault(c => c.Partition == partition && c.Active && !c.Gone);

    /// <summary>Partitions each host is the active consumer of.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<int>> ActiveByHost() =>
        Partitions.Select(ActiveOf).OfType<PartitionConsumer>().GroupBy(c => c.Host)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => (IReadOnlyList<int>)[.. g.Select(c => c.Partition)]);

    /// <summary>Every partition has an active consumer on one of <paramref name="hosts"/>, its channel on one of <paramref name="liveNodes"/>.</summary>
    public bool AllActiveOn(IReadOnlyCollection<string> hosts, IReadOnlyCollection<string> liveNodes, int partitions) =>
        Queues.Count == partitions && Partitions.All(p => ActiveOf(p) is { } c && hosts.Contains(c.Host) && liveNodes.Contains(c.Node));

    /// <summary>Every partition has a consumer from each of <paramref name="hosts"/> (one active, the others standing by).</summary>
    public bool EveryHostRegistered(IReadOnlyCollection<string> hosts, int partitions) =>
        Queues.Count == partitions && Partitions.All(p => hosts.All(h => Consumers.Any(c => c.Partition == p && c.Host == h)));

    /// <summary>Every partition's leader is on a live node.</summary>
    public bool LeadersOn(IReadOnlyCollection<string> liveNodes) => Queues.Count > 0 && Queues.All(q => liveNodes.Contains(q.Leader));

    public int LeadersOnNode(string node) => Queues.Count(q => q.Leader == node);

    public int ActiveConsumersOnNode(string node) => Partitions.Count(p => ActiveOf(p)?.Node == node);

    public int PublishersOnNode(string node) => Connections.Count(c => c.Node == node && c.Publisher);

    /// <summary>The run's metering hosts' and SDK publishers' connections, per broker node.</summary>
    public string ConnectionsByNode(IEnumerable<string> nodes) => string.Join("; ", nodes.Select(n =>
        $"{n}: {string.Join(", ", Connections.Where(c => c.Node == n && (c.Publisher || c.MeteringHost)).Select(c => c.Label).DefaultIfEmpty("none"))}"));

    /// <summary>One line per host: the partitions it is the active consumer of.</summary>
    public string Summary()
    {
        var byHost = ActiveByHost();
        var orphans = Partitions.Where(p => ActiveOf(p) is null).ToList();
        var text = string.Join("; ", byHost.Select(h => $"{h.Key}: {Names(h.Value)} ({h.Value.Count})"));
        return orphans.Count == 0 ? text : $"{text}; no active consumer: {Names(orphans)}";
    }

    /// <summary>A Markdown table: per partition its active consumer, the standbys, and its replicas.</summary>
    public string Table()
    {
        var md = new StringBuilder();
        md.AppendLine("| partition | active consumer (host @ broker node) | standby | queue leader | replicas online |");
        md.AppendLine("|---|---|---|---|---|");
        foreach (var queue in Queues)
        {
            var active = ActiveOf(queue.Partition);
            var standby = Consumers.Where(c => c.Partition == queue.Partition && !ReferenceEquals(c, active))
                .Select(c => c.Gone ? $"(unreachable consumer on {c.Node})" : $"{c.Host} @ {c.Node}");
            md.AppendLine($"| p{queue.Partition} | {(active is null ? "**none**" : $"{active.Host} @ {active.Node}")} | {string.Join(", ", standby)} | {queue.Leader} | {string.Join(", ", queue.Online)} |");
        }
        return md.ToString();
    }

    public static string Names(IEnumerable<int> partitions) => string.Join(" ", partitions.Select(p => $"p{p}"));

    /// <summary><c>scale-a@host</c> → <c>scale-a</c>.</summary>
    public static string NodeName(string node) => node.Split('@')[0];

    static string[] Nodes(string text) => [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(NodeName)];
}
