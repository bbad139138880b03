using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using RabbitMQ.Client;
using Throughput.Contracts;
using Throughput.Hosting;

namespace Throughput.IntegrationTests;

/// <summary>The real platform host on the real PostgreSQL and RabbitMQ that infra/services.sh started.</summary>
public sealed class PlatformFixture : WebApplicationFactory<Program>, IAsyncLifetime
{
    public const string OperatorKey = "tpk_kitoperator.integration-tests-operator-secret";

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    /// <summary>Tests keep to a schema of their own, so hosts of demos or benchmarks on the same database never interfere.</summary>
    public const string Schema = "throughput_tests";

    public ServiceSettings Settings { get; }

    public PlatformFixture()
    {
        Environment.SetEnvironmentVariable("THROUGHPUT_PG_SCHEMA", Schema);
        Settings = ServiceSettings.FromEnvironment();
    }

    IConnection? _rabbit;

    /// <summary>This run's own metering exchange and partition queues: no other host on the machine consumes them.</summary>
    public string MeteringExchange { get; } = $"tests.metering.{Guid.NewGuid():N}"[..27];

    const int Partitions = 4;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("Access:BootstrapOperatorKey", OperatorKey);
        builder.UseSetting("Metering:Exchange", MeteringExchange);
        builder.UseSetting("Metering:QueuePrefix", MeteringExchange + ".p");
        builder.UseSetting("Metering:Partitions", Partitions.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    public async Task InitializeAsync()
    {
        _ = Server; // starts the host: schema migration, bus, consumers
        var factory = new ConnectionFactory { Uri = Settings.RabbitUri };
        _rabbit = await factory.CreateConnectionAsync("throughput-tests");
    }

    public HttpClient Client(string? apiKey)
    {
        var client = CreateClient();
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    public HttpClient Operator() => Client(OperatorKey);

    /// <summary>A fresh tenant with its own key, so tests never see each other's data.</summary>
    public async Task<(string TenantId, HttpClient Client)> NewTenantAsync(string currency = "USD")
    {
        var tenantId = "t-" + Guid.NewGuid().ToString("N")[..12];
        var op = Operator();
        (await op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = "Tenant " + tenantId, currency })).EnsureSuccessStatusCode();
        var issued = await (await op.PostAsync($"/v1/operator/tenants/{tenantId}/keys", null)).Content.ReadFromJsonAsync<JsonElement>();
        return (tenantId, Client(issued.GetProperty("apiKey").GetString()));
    }

    /// <summary>A pool in a region no other test uses.</summary>
    public async Task<string> NewPoolAsync(string model, decimal capacityPtu)
    {
        var region = "r" + Guid.NewGuid().ToString("N")[..10];
        (await Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/{region}", new { capacityPtu })).EnsureSuccessStatusCode();
        return region;
    }

    public static async Task<string> BuyAsync(HttpClient customer, string region, decimal ptu, string model = "gpt-4o", string name = "d")
    {
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name, model, region, type = "Global", ptu });
        created.EnsureSuccessStatusCode();
        return (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    }

    /// <summary>Registers a serving node that may serve the given regions (none: all).</summary>
    public async Task<string> NewServingNodeAsync(params string[] regions)
    {
        var producerId = "node-" + Guid.NewGuid().ToString("N")[..10];
        (await Operator().PutAsJsonAsync($"/v1/operator/serving-nodes/{producerId}", new { regions, tenants = Array.Empty<string>(), brokerUser = Settings.RabbitUser })).EnsureSuccessStatusCode();
        return producerId;
    }

    /// <summary>Publishes raw JSON as a serving node written in any language would, with publisher confirms.</summary>
    public Task PublishRawAsync(string routingKey, ReadOnlyMemory<byte> body) => PublishRawAsync(routingKey, body, Settings.RabbitUser);

    /// <summary>The same with the AMQP user id of one's choosing (null: none), which the broker checks against this connection's user.</summary>
    public async Task PublishRawAsync(string routingKey, ReadOnlyMemory<byte> body, string? userId)
    {
        await using var channel = await _rabbit!.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var properties = new BasicProperties
        {
            ContentType = MeteringTopology.ContentType,
            DeliveryMode = DeliveryModes.Persistent,
            UserId = userId,
            Headers = new Dictionary<string, object?> { [MeteringTopology.VersionHeader] = MeteringTopology.CurrentVersion },
        };
        await channel.BasicPublishAsync(MeteringExchange, routingKey, mandatory: true, properties, body);
    }

    public Task PublishAsync(MeteringBatch batch) =>
        PublishRawAsync(batch.Records[0].DeploymentId, JsonSerializer.SerializeToUtf8Bytes(batch, Json));

    public new async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (_rabbit is null) return;
        await Tests.DeleteMeteringTopologyAsync(_rabbit, MeteringExchange, Partitions);
        await _rabbit.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class PlatformCollection : ICollectionFixture<PlatformFixture>
{
    public const string Name = "platform";
}
