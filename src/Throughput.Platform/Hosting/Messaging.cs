using MassTransit;
using Npgsql;
using Throughput.Contracts;
using Throughput.Metering;

namespace Throughput.Hosting;

public sealed class MeteringOptions
{
    public string Exchange { get; set; } = MeteringTopology.Exchange;
    public string QueuePrefix { get; set; } = MeteringTopology.PartitionQueuePrefix;

    /// <summary>Partition queues behind the consistent-hash exchange; each has one active consumer, so one writer per deployment.</summary>
    public int Partitions { get; set; } = 4;

    /// <summary>Messages folded into one PostgreSQL transaction; 25 (prefetch 50) measured best: higher raised peak memory past 500 MB for no gain.</summary>
    public int BatchMessageLimit { get; set; } = 25;

    /// <summary>
    /// How long a partly filled batch waits for more messages. Under load batches fill by count long before this; when
    /// usage trickles it is pure delay on the way to a throttle, so it is kept short (feedback latency target ≤ 100 ms).
    /// </summary>
    public TimeSpan BatchTimeLimit { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Declare the partition queues as quorum queues (replicated across a RabbitMQ cluster); classic on a single node.</summary>
    public bool QuorumQueues { get; set; }
}

public static class Messaging
{
    public static IServiceCollection AddThroughputMessaging(this IServiceCollection services, ServiceSettings settings, IConfiguration configuration)
    {
        var metering = configuration.GetSection("Metering").Get<MeteringOptions>() ?? new MeteringOptions();
        services.AddSingleton(metering);
        services.AddSingleton<MeteringMetrics>();
        services.AddSingleton<MalformedMessages>();

        services.AddMassTransit(bus =>
        {
            bus.AddConsumer<MeteringConsumer>(c => c.Options<BatchOptions>(o => o
                .SetMessageLimit(metering.BatchMessageLimit)
                .SetTimeLimit(metering.BatchTimeLimit)
                .SetConcurrencyLimit(1)));

            bus.UsingRabbitMq((context, rabbit) =>
            {
                rabbit.Host(settings.RabbitUri);
                rabbit.ConnectReceiveObserver(context.GetRequiredService<MalformedMessages>());
                for (var partition = 0; partition < metering.Partitions; partition++)
                {
                    rabbit.ReceiveEndpoint(metering.QueuePrefix + partition, endpoint =>
                    {
                        endpoint.ConfigureConsumeTopology = false;
                        endpoint.SingleActiveConsumer = true;
                        if (metering.QuorumQueues) endpoint.SetQuorumQueue();
                        endpoint.PrefetchCount = metering.BatchMessageLimit * 2;
                        endpoint.UseRawJsonDeserializer(RawSerializerOptions.AnyMessageType, isDefault: true);
                        endpoint.Bind(metering.Exchange, exchange =>
                        {
                            exchange.ExchangeType = MeteringTopology.ExchangeType;
                            exchange.RoutingKey = "1"; // equal weight per partition
                        });
                        // Transient failures (a concurrent writer) retry the whole batch a few times; nothing is acked before commit.
                        endpoint.UseMessageRetry(r => r.Exponential(10, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(100)));
                        // PostgreSQL away (restart, crash recovery, failover) is waited out however long it takes: giving up would move
                        // the batch to the _error queue, metered and never billed. Its messages stay unacked meanwhile, so the broker
                        // keeps them if this host dies, and the claims in the ledger still make every retry count once.
                        endpoint.UseMessageRetry(r =>
                        {
                            r.Handle<Exception>(DatabaseUnavailable);
                            r.Exponential(int.MaxValue, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200));
                        });
                        endpoint.ConfigureConsumer<MeteringConsumer>(context);
                    });
                }
            });
        });
        return services;
    }

    /// <summary>
    /// PostgreSQL could not be reached, or went away mid-transaction (shut down, crashed, starting up, connection lost):
    /// a state of the database that waiting cures, unlike a bug or bad data.
    /// </summary>
    internal static bool DatabaseUnavailable(Exception exception) => exception switch
    {
        PostgresException pg => pg.IsTransient || pg.SqlState.StartsWith("57P", StringComparison.Ordinal) || pg.SqlState.StartsWith("08", StringComparison.Ordinal),
        NpgsqlException npgsql when npgsql.IsTransient => true,
        AggregateException all => all.InnerExceptions.Any(DatabaseUnavailable),
        { InnerException: { } inner } => DatabaseUnavailable(inner),
        _ => false,
    };
}
