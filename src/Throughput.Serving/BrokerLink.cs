using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Throughput.Serving;

/// <summary>Connection chores the metering publisher and the admission feed share.</summary>
static class BrokerLink
{
    /// <summary>A connection to one of <paramref name="nodes"/> (tried in random order), or to the factory's URI when there are none.</summary>
    public static Task<IConnection> ConnectAsync(ConnectionFactory factory, IReadOnlyList<AmqpTcpEndpoint> nodes, CancellationToken cancellationToken) =>
        nodes.Count == 0 ? factory.CreateConnectionAsync(cancellationToken) : factory.CreateConnectionAsync(nodes, cancellationToken);

    /// <summary>
    /// Checks the exchange passively and declares it (durable) only when absent: an existing exchange may carry other
    /// flags, and re-declaring it with different ones would close the channel.
    /// </summary>
    public static async Task EnsureExchangeAsync(IConnection connection, string exchange, string type, CancellationToken cancellationToken)
    {
        await using (var probe = await connection.CreateChannelAsync(cancellationToken: cancellationToken))
        {
            try
            {
                await probe.ExchangeDeclarePassiveAsync(exchange, cancellationToken);
                return;
            }
            catch (OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == Constants.NotFound)
            {
                // Absent: declared below on a fresh channel, since the broker closed this one.
            }
        }
        await using var declare = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
        await declare.ExchangeDeclareAsync(exchange, type, durable: true, autoDelete: false, cancellationToken: cancellationToken);
    }

    /// <summary>Closes (or aborts) a connection being thrown away; a failure to close it cleanly changes nothing.</summary>
    public static async Task DropAsync(IConnection? connection, bool graceful)
    {
        if (connection is null) return;
        try
        {
            if (graceful) await connection.CloseAsync(TimeSpan.FromSeconds(2));
            else await connection.AbortAsync(TimeSpan.FromSeconds(1));
            await connection.DisposeAsync();
        }
        catch (Exception)
        {
            // See the summary: nothing to do.
        }
    }
}
