using RabbitMQ.Client;

namespace Throughput.IntegrationTests;

static class Tests
{
    /// <summary>Removes a test run's own metering exchange and its partition queues (with MassTransit's error and skipped queues).</summary>
    public static async Task DeleteMeteringTopologyAsync(IConnection rabbit, string exchange, int partitions)
    {
        await using var channel = await rabbit.CreateChannelAsync();
        for (var p = 0; p < partitions; p++)
            foreach (var suffix in new[] { "", "_error", "_skipped" })
            {
                await channel.QueueDeleteAsync($"{exchange}.p{p}{suffix}");
                await channel.ExchangeDeleteAsync($"{exchange}.p{p}{suffix}");
            }
        await channel.ExchangeDeleteAsync(exchange);
    }

    /// <summary>Messages waiting in a queue; 0 when it was never declared (MassTransit declares an _error queue on first use).</summary>
    public static async Task<uint> MessagesInAsync(IConnection rabbit, string queue)
    {
        await using var channel = await rabbit.CreateChannelAsync();
        try
        {
            return (await channel.QueueDeclarePassiveAsync(queue)).MessageCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return 0;
        }
    }

    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Throughput.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Throughput.sln not found above " + AppContext.BaseDirectory);
    }
}
