using MassTransit;
using Npgsql;
using Throughput.Configuration;
using Throughput.Contracts;
using Throughput.Http;

namespace Throughput.Metering;

public sealed class MeteringOptions
{
    public string Exchange { get; set; } = MeteringTopology.Exchange;
    public string QueuePrefix { get; set; } = MeteringTopology.PartitionQueuePrefix;

    /// <summary>Partition queues behind the consistent-hash exchange; each has one active consumer, so one writer per deployment.</summary>
    public int Partitions { get; set; } = 4;

    /// <summary>
    /// The most messages folded into one PostgreSQL transaction: a consumer batch, or the batches that waited while the
    /// partition folded the previous ones (<see cref="GroupCommit{TBatch}"/>). A transaction's usage is one stream write
    /// whatever it holds, so bigger ones pay, up to the host's memory: measured in docs/metering.md.
    /// </summary>
    public int BatchMessageLimit { get; set; } = 200;

    /// <summary>Messages a partition's consumer holds unacknowledged: twice what one transaction takes, so the next group fills while one folds.</summary>
    public int Prefetch => BatchMessageLimit * 2;

    /// <summary>
    /// How long a partly filled batch waits for more messages. When usage trickles it is pure delay on the way to a
    /// throttle, so it is kept short (feedback latency target ≤ 50 ms); under load the batches that close while the
    /// partition is busy are folded together, so the window does not bound a transaction's size.
    /// </summary>
    public TimeSpan BatchTimeLimit { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// How often a backlogged partition writes its deployments' meters (bucket and totals): a deployment's row is then
    /// written once per interval instead of once per batch, and what callers read of a bucket or a total lags the usage
    /// log by up to this much while the partition is behind. A partition that keeps up writes them with every batch.
    /// Ten seconds rather than one: with many deployments each metered rarely, every record otherwise costs a row write
    /// (measured in docs/metering.md, "Meters: checkpointed").
    /// </summary>
    public TimeSpan MeterCheckpointInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A batch (or group) whose oldest message waited in the host longer than this, queued behind the previous one, finds its
    /// partition behind (see <see cref="MeterCheckpointInterval"/>). Default: the batch window and 20 ms.
    /// </summary>
    public TimeSpan? BacklogAfter { get; set; }

    /// <summary>A partition without a batch for this long writes the meters it has not written yet.</summary>
    public TimeSpan MeterIdleWrite { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Declare the partition queues as quorum queues (replicated across a RabbitMQ cluster); classic on a single node.</summary>
    public bool QuorumQueues { get; set; }

    /// <summary>This host's index among <see cref="Instances"/> metering hosts, from 0.</summary>
    public int Instance { get; set; }

    /// <summary>
    /// Metering hosts sharing the partitions. A partition queue's active consumer is the first one registered, so each host
    /// registers on its own share (partition p belongs to instance p mod Instances) at once and on the rest only
    /// <see cref="StandbyAfter"/> later, as their standby: hosts started together split the partitions instead of the
    /// first one taking them all, and each still takes over any partition whose host dies.
    /// </summary>
    public int Instances { get; set; } = 1;

    public TimeSpan StandbyAfter { get; set; } = TimeSpan.FromSeconds(10);

    public bool Owns(int partition) => partition % Instances == Instance;

    public void Validate()
    {
        if (Partitions < 1) throw new InvalidOperationException($"Metering:Partitions must be at least 1, not {Partitions}");
        if (Instances < 1 || Instance < 0 || Instance >= Instances)
            throw new InvalidOperationException($"Metering:Instance must be from 0 to Metering:Instances - 1 ({Instances - 1}), not {Instance}");
    }
}

public static class MeteringTransport
{
    public static readonly TimeSpan ConsumerStopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Every partition queue binds with this weight (points on the consistent-hash ring), equal for all.</summary>
    const string PartitionWeight = "100";

    public static IServiceCollection AddMeteringTransport(this IServiceCollection services, IConfiguration configuration)
    {
        var metering = configuration.GetSection("Metering").Get<MeteringOptions>() ?? new MeteringOptions();
        metering.Validate();
        // Names this host's connection in the broker, so an operator sees which host is a partition's active consumer.
        var connectionName = $"throughput-metering:{configuration["Host:Name"] ?? $"{Environment.MachineName}:{Environment.ProcessId}"}";
        services.AddSingleton(metering);
        services.AddSingleton<MeteringMetrics>();
        services.AddSingleton<MalformedMessages>();
        services.AddSingleton<LostConnectionDeliveries>();
        services.AddHostedService(sp => sp.GetRequiredService<LostConnectionDeliveries>());

        services.AddMassTransit(bus =>
        {
            bus.DisableUsageTelemetry(); // no call out of the machine that the operator did not configure
            // Batches are handed over as soon as their window closes, however many the partition is still folding: those that
            // wait are folded together (GroupCommit), so as many may wait as the prefetch can fill. MassTransit would size the
            // endpoint for that many full batches (prefetch and concurrency of limit × batches, which RabbitMQ.Client turns into
            // as many dispatch workers contending for one channel); ConfigurePartition sizes it instead.
            bus.AddConsumer<MeteringConsumer>(c => c.Options<BatchOptions>(o => o
                .SetMessageLimit(metering.BatchMessageLimit)
                .SetTimeLimit(metering.BatchTimeLimit)
                .SetConcurrencyLimit(metering.Prefetch)
                .SetConfigurationCallback((_, _) => { })));

            bus.UsingRabbitMq((context, rabbit) =>
            {
                var settings = context.GetRequiredService<ServiceSettings>();
                rabbit.Host(settings.RabbitUri, host =>
                {
                    host.ConnectionName(connectionName);
                    if (settings.RabbitNodes.Length > 0) host.UseCluster(cluster => { foreach (var node in FromRandomNode(settings.RabbitEndpoints)) cluster.Node($"{node.HostName}:{node.Port}"); });
                });
                rabbit.ConnectReceiveObserver(context.GetRequiredService<MalformedMessages>());
                rabbit.ConnectReceiveObserver(context.GetRequiredService<LostConnectionDeliveries>());
                foreach (var partition in Enumerable.Range(0, metering.Partitions).Where(metering.Owns))
                    rabbit.ReceiveEndpoint(metering.QueuePrefix + partition, endpoint => ConfigurePartition(endpoint, metering, context));
            });
        });
        // When a broker node dies, a partition's consumer waits for its deliveries in flight before it reconnects; the bound
        // cancels those not yet acking (anything unacked is redelivered and the dedupe ledger counts it once). Deliveries whose
        // ack is already stuck on the dead connection are LostConnectionDeliveries' job.
        services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.ConsumerStopTimeout = ConsumerStopTimeout;
            o.StopTimeout = ConsumerStopTimeout + TimeSpan.FromSeconds(5);
        });
        if (metering.Instances > 1) services.AddHostedService<StandbyPartitions>();
        return services;
    }

    /// <summary>
    /// MassTransit connects to the first node listed and moves to the next on failure; starting each host at a random node
    /// spreads the hosts' connections, and the partition queues they declare (a quorum queue's leader starts on the
    /// declaring connection's node), over the cluster instead of piling them on one node.
    /// </summary>
    static IEnumerable<RabbitMQ.Client.AmqpTcpEndpoint> FromRandomNode(IReadOnlyList<RabbitMQ.Client.AmqpTcpEndpoint> nodes)
    {
        var first = Random.Shared.Next(nodes.Count);
        return nodes.Skip(first).Concat(nodes.Take(first));
    }

    internal static void ConfigurePartition(IRabbitMqReceiveEndpointConfigurator endpoint, MeteringOptions metering, IRegistrationContext context)
    {
        endpoint.ConfigureConsumeTopology = false;
        endpoint.SingleActiveConsumer = true;
        if (metering.QuorumQueues) endpoint.SetQuorumQueue();
        endpoint.PrefetchCount = metering.Prefetch;
        endpoint.ConcurrentMessageLimit = metering.Prefetch; // every message prefetched may wait in a batch
        endpoint.AddDeserializer(new MeteringDeserializer(), isDefault: true);
        endpoint.Bind(metering.Exchange, exchange =>
        {
            exchange.ExchangeType = MeteringTopology.ExchangeType;
            // The weight is the partition's number of points on the exchange's hash ring: with one point each, four partitions
            // split the ring into arcs of very unequal length, and one partition took most of the deployments.
            exchange.RoutingKey = PartitionWeight;
        });
        // Transient failures (a concurrent writer) retry the whole batch a few times; nothing is acked before commit.
        endpoint.UseMessageRetry(r => r.Exponential(10, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(100)));
        // PostgreSQL away (restart, crash recovery, failover) is waited out however long it takes: giving up would move
        // the batch to the _error queue, metered and never billed. Its messages stay unacked meanwhile, so the broker
        // keeps them if this host dies, and the claims in the ledger still make every retry count once.
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<Exception>(DatabaseOutage.Covers);
            r.Exponential(int.MaxValue, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200));
        });
        endpoint.ConfigureConsumer<MeteringConsumer>(context);
    }
}

/// <summary>Registers this host, <see cref="MeteringOptions.StandbyAfter"/> after start-up, as the standby consumer of the partitions other hosts own.</summary>
public sealed class StandbyPartitions(IReceiveEndpointConnector connector, MeteringOptions metering, IHostApplicationLifetime lifetime, ILogger<StandbyPartitions> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        await using (lifetime.ApplicationStarted.Register(started.SetResult)) await started.Task.WaitAsync(stoppingToken);
        await Task.Delay(metering.StandbyAfter, stoppingToken);
        var standby = Enumerable.Range(0, metering.Partitions).Where(p => !metering.Owns(p)).ToList();
        foreach (var partition in standby)
        {
            var handle = connector.ConnectReceiveEndpoint(metering.QueuePrefix + partition,
                (context, endpoint) => MeteringTransport.ConfigurePartition((IRabbitMqReceiveEndpointConfigurator)endpoint, metering, context));
            await handle.Ready.WaitAsync(stoppingToken);
        }
        log.LogInformation("Standby consumer of metering partitions {Partitions}", string.Join(", ", standby));
    }
}
