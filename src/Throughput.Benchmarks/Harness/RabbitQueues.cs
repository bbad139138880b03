using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using Throughput.Serving;

namespace Throughput.Benchmarks.Harness;

/// <summary>Reads queue depths during a run and removes the run's own queues and exchanges afterwards.</summary>
public sealed class RabbitQueues(IConnection connection) : IAsyncDisposable
{
    public static async Task<RabbitQueues> ConnectAsync(BrokerSettings broker, CancellationToken cancellationToken)
    {
        var factory = new ConnectionFactory { Uri = broker.Uri, ClientProvidedName = "throughput-bench-probe" };
        return new RabbitQueues(await factory.CreateConnectionAsync(broker.Endpoints, cancellationToken));
    }

    /// <summary>Messages ready in the queues (not those delivered and unacked); a queue not declared yet counts 0.</summary>
    public async Task<long> ReadyMessagesAsync(IEnumerable<string> queues, CancellationToken cancellationToken)
    {
        long ready = 0;
        foreach (var queue in queues)
        {
            await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
            try
            {
                ready += (await channel.QueueDeclarePassiveAsync(queue, cancellationToken)).MessageCount;
            }
            catch (OperationInterruptedException)
            {
                // Not declared (yet).
            }
        }
        return ready;
    }

    public async Task DeleteAsync(IEnumerable<string> queues, IEnumerable<string> exchanges)
    {
        foreach (var queue in queues)
        {
            await using var channel = await connection.CreateChannelAsync();
            await IgnoreAbsentAsync(() => channel.QueueDeleteAsync(queue, ifUnused: false, ifEmpty: false));
        }
        foreach (var exchange in exchanges)
        {
            await using var channel = await connection.CreateChannelAsync();
            await IgnoreAbsentAsync(() => channel.ExchangeDeleteAsync(exchange, ifUnused: false));
        }
    }

    static async Task IgnoreAbsentAsync(Func<Task> delete)
    {
        try
        {
            await delete();
        }
        catch (OperationInterruptedException)
        {
            // Never declared: nothing to remove.
        }
    }

    public async ValueTask DisposeAsync()
    {
        await connection.CloseAsync();
        await connection.DisposeAsync();
    }
}
