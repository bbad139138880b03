using System.Collections.Concurrent;
using MassTransit;
using MassTransit.Transports;
using BrokerConnection = MassTransit.RabbitMqTransport.ConnectionContext;

namespace Throughput.Metering;

/// <summary>
/// Cancels the deliveries still in flight on a broker connection that has closed, so a partition whose node died gets
/// its consumer back. RabbitMQ.Client 7.2.2 leaves its bounded queue of outgoing frames open when the socket write fails
/// (rabbitmq-dotnet-client #1930, fixed after 7.2.2): once it is full, the acks of deliveries finishing after the node
/// is lost wait forever, the client's shutdown of each channel waits for those deliveries, and MassTransit waits for the
/// shutdown before it reconnects the endpoint, so every partition behind the first blocked channel lost its consumer
/// for good. MassTransit's ConsumerStopTimeout cannot reach an ack already started; cancelling the delivery can. The
/// broker redelivers what was not acked, and the dedupe ledger counts it once.
/// </summary>
public sealed class LostConnectionDeliveries(MeteringMetrics metrics, ILogger<LostConnectionDeliveries> log) : BackgroundService, IReceiveObserver
{
    static readonly TimeSpan Every = TimeSpan.FromSeconds(1);

    readonly ConcurrentDictionary<BaseReceiveContext, BrokerConnection> _inFlight = new();

    public Task PreReceive(ReceiveContext context)
    {
        if (context is BaseReceiveContext delivery && context.TryGetPayload<BrokerConnection>(out var connection)) _inFlight[delivery] = connection;
        return Task.CompletedTask;
    }

    public Task PostReceive(ReceiveContext context) => Done(context);

    public Task ReceiveFault(ReceiveContext context, Exception exception) => Done(context);

    public Task PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType) where T : class => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception) where T : class => Task.CompletedTask;

    Task Done(ReceiveContext context)
    {
        if (context is BaseReceiveContext delivery) _inFlight.TryRemove(delivery, out _);
        return Task.CompletedTask;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Every);
        while (await timer.WaitForNextTickAsync(stoppingToken)) Release();
    }

    /// <summary>Cancels every delivery in flight on a closed connection.</summary>
    void Release()
    {
        var released = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (delivery, connection) in _inFlight)
        {
            if (connection.Connection.IsOpen || !_inFlight.TryRemove(delivery, out _)) continue;
            delivery.Cancel();
            var node = connection.Connection.Endpoint.ToString();
            released[node] = released.GetValueOrDefault(node) + 1;
        }
        // Counted every tick, 0 too, so the series is there before the first loss: a dashboard's rate of an absent series is no data.
        metrics.ReleasedOnLostConnection(released.Values.Sum());
        foreach (var (node, count) in released)
        {
            log.LogWarning("Connection to broker node {Node} lost: cancelled {Deliveries} deliveries in flight on it so their partitions can reconnect; the broker redelivers them", node, count);
        }
    }
}
