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

    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Throughput.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Throughput.sln not found above " + AppContext.BaseDirectory);
    }
}
