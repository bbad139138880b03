using System.Text.Json;
using Microsoft.AspNetCore.Mvc.Testing;
using RabbitMQ.Client;
using Throughput.Contracts;
using Throughput.Hosting;

namespace Throughput.IntegrationTests;

/// <summary>The real platform host on the real PostgreSQL and RabbitMQ that infra/services.sh started.</summary>
public sealed class PlatformFixture : WebApplicationFactory<Program>, IAsyncLifetime
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public ServiceSettings Settings { get; } = ServiceSettings.FromEnvironment();

    IConnection? _rabbit;

    public async Task InitializeAsync()
    {
        _ = Server; // starts the host: schema migration, bus, consumers
        var factory = new ConnectionFactory { Uri = Settings.RabbitUri };
        _rabbit = await factory.CreateConnectionAsync("throughput-tests");
    }

    /// <summary>Publishes raw JSON as a serving node written in any language would, with publisher confirms.</summary>
    public async Task PublishRawAsync(string routingKey, ReadOnlyMemory<byte> body)
    {
        await using var channel = await _rabbit!.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var properties = new BasicProperties
        {
            ContentType = MeteringTopology.ContentType,
            DeliveryMode = DeliveryModes.Persistent,
            Headers = new Dictionary<string, object?> { [MeteringTopology.VersionHeader] = MeteringTopology.CurrentVersion },
        };
        await channel.BasicPublishAsync(MeteringTopology.Exchange, routingKey, mandatory: true, properties, body);
    }

    public Task PublishAsync(MeteringBatch batch) =>
        PublishRawAsync(batch.Records[0].DeploymentId, JsonSerializer.SerializeToUtf8Bytes(batch, Json));

    public new async Task DisposeAsync()
    {
        if (_rabbit is not null) await _rabbit.DisposeAsync();
        await base.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class PlatformCollection : ICollectionFixture<PlatformFixture>
{
    public const string Name = "platform";
}
