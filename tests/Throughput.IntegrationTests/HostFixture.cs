using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using OpenTelemetry.Trace;
using RabbitMQ.Client;
using Microsoft.Extensions.Hosting;
using Throughput.Admission;
using Throughput.Configuration;
using Throughput.Contracts;
using Throughput.Flywheel.Demo;
using Throughput.Hosting;

namespace Throughput.IntegrationTests;

/// <summary>
/// What the integration fixtures share: the real platform host in-process on the real PostgreSQL and RabbitMQ, with a
/// metering exchange and partition queues of its own (no other host on the machine consumes them), its operator key, and
/// the steps tests set up with: tenants, pools and serving nodes through the API, metering published as a node would.
/// </summary>
public abstract class HostFixture(string operatorKey, string meteringExchange, int partitions) : WebApplicationFactory<Program>, IAsyncLifetime
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    IConnection? _rabbit;
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, Uri> _nodeBrokers = new();
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, Task<IConnection>> _nodeConnections = new();

    public abstract ServiceSettings Settings { get; }

    public string MeteringExchange { get; } = meteringExchange;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("Access:BootstrapOperatorKey", operatorKey);
        builder.UseSetting("Metering:Exchange", MeteringExchange);
        builder.UseSetting("Metering:QueuePrefix", MeteringExchange + ".p");
        // The crash tests' metering-only hosts consume exchanges of their own, which the fixture's nodes publish to.
        builder.UseSetting("Metering:NodeExchanges", @"tests\.(kill|outage)\..*");
        builder.UseSetting("Metering:Partitions", partitions.ToString(System.Globalization.CultureInfo.InvariantCulture));
        builder.ConfigureLogging(logging => logging.AddProvider(new HostLogFile(MeteringExchange)));
        // Spans recorded as an OTLP endpoint would receive them, into a list the telemetry test reads.
        builder.UseSetting("Telemetry:Traces", "true");
        builder.ConfigureServices(services => services.ConfigureOpenTelemetryTracerProvider(traces => traces.AddInMemoryExporter(Spans)));
    }

    /// <summary>Every span the host recorded and exported.</summary>
    public SpanLog Spans { get; } = [];

    public async Task InitializeAsync()
    {
        await DropIfRebuildUnfinishedAsync();
        _ = Server; // starts the host: schema migration, bus, consumers
        _rabbit = await new ConnectionFactory { Uri = Settings.RabbitUri }.CreateConnectionAsync($"throughput-tests:{GetType().Name}");
        // A lease owner grows no share for its first TTL (it cannot know what a predecessor handed out): tests start after it.
        if (Services.GetServices<IHostedService>().OfType<LeaseOwner>().Any())
        {
            var leases = Services.GetRequiredService<AdmissionLeases>();
            var clock = Services.GetRequiredService<TimeProvider>();
            var from = (await Eventually.Until(() => Task.FromResult(leases.GrowsFrom), f => f is not null, TimeSpan.FromSeconds(30)))!.Value;
            // In the host's time; a settable clock (the invoicing fixture's) stands still, so at most one TTL of real time.
            var left = from - clock.GetUtcNow();
            if (left > TimeSpan.Zero) await Task.Delay(left < leases.Ttl ? left : leases.Ttl);
        }
    }

    /// <summary>
    /// A run stopped during the rebuild test leaves its schema marked half rebuilt, and the rebuild gate then rightly
    /// refuses every later host over it. The schema is the tests' own, kept between runs only to test hosts on a store
    /// that already exists: so it starts again empty, as an operator would after infra/rebuild.sh.
    /// </summary>
    async Task DropIfRebuildUnfinishedAsync()
    {
        var schema = Settings.PgSchema;
        await using var database = NpgsqlDataSource.Create(Settings.PostgresConnectionString());
        await using (var exists = database.CreateCommand($"select to_regclass('{schema}.mt_doc_unfinishedrebuild') is not null"))
            if (await exists.ExecuteScalarAsync() is not true) return;
        await using (var marked = database.CreateCommand($"select exists(select 1 from {schema}.mt_doc_unfinishedrebuild)"))
            if (await marked.ExecuteScalarAsync() is not true) return;
        await using var drop = database.CreateCommand($"drop schema {schema} cascade");
        await drop.ExecuteNonQueryAsync();
    }

    public HttpClient Client(string? apiKey)
    {
        var client = CreateClient();
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    /// <summary>
    /// The operator's key sets up every test's tenants, pools and nodes, so bursts of setup calls can exceed its rate
    /// limit: like any well-behaved client it waits out a 429 for its Retry-After. Tenant and node keys get no such
    /// patience (<see cref="Client"/>), so the tests of the rate limit itself see every refusal.
    /// </summary>
    public HttpClient Operator() => PatientClient(operatorKey);

    /// <summary>A client that waits out a 429 for its Retry-After, as the demo's own clients do.</summary>
    public HttpClient PatientClient(string? apiKey)
    {
        var client = CreateDefaultClient(new RetryAfterPatience());
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    /// <summary>
    /// The OpenAPI document, read as anyone may read it: patiently, since the tests of the anonymous rate limit flood it
    /// from this same address, in parallel.
    /// </summary>
    public Task<System.Text.Json.JsonElement> OpenApiDocumentAsync() =>
        PatientClient(null).GetFromJsonAsync<System.Text.Json.JsonElement>("/openapi/v1.json");

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

    /// <summary>Registers a serving node that may serve the given regions (none: all) and issues its own broker credentials.</summary>
    public Task<string> NewServingNodeAsync(params string[] regions) => NewServingNodeAsync(new { regions, tenants = Array.Empty<string>() });

    /// <summary>Registers a prompt or a generation server of a phase-split fleet for one region, with its own broker credentials.</summary>
    public Task<string> NewPhaseServingNodeAsync(string phase, string region) => NewServingNodeAsync(new { regions = new[] { region }, phase });

    async Task<string> NewServingNodeAsync(object registration)
    {
        var producerId = "node-" + Guid.NewGuid().ToString("N")[..10];
        var op = Operator();
        (await op.PutAsJsonAsync($"/v1/operator/serving-nodes/{producerId}", registration)).EnsureSuccessStatusCode();
        var credentials = await (await op.PostAsync($"/v1/operator/serving-nodes/{producerId}/credentials", null)).EnsureSuccessStatusCode()
            .Content.ReadFromJsonAsync<JsonElement>();
        _nodeBrokers[producerId] = NodeUri(credentials.GetProperty("brokerUser").GetString()!, credentials.GetProperty("brokerPassword").GetString()!);
        return producerId;
    }

    /// <summary>A client with a new ServingNode key of this name; named after a registered node's producer id, it is that node's key.</summary>
    public async Task<HttpClient> ServingNodeClientAsync(string name)
    {
        var issued = await (await Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "ServingNode", name }))
            .EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>();
        return Client(issued.GetProperty("apiKey").GetString());
    }

    /// <summary>The AMQP address of the platform's broker with these credentials.</summary>
    public Uri NodeUri(string user, string password) => (Settings with { RabbitUser = user, RabbitPassword = password }).RabbitUri;

    /// <summary>The AMQP address a node registered by <see cref="NewServingNodeAsync"/> connects with: its own broker user.</summary>
    public Uri BrokerOf(string producerId) => _nodeBrokers[producerId];

    /// <summary>Publishes raw JSON over the platform's own connection, with its user id: a message no serving node sent.</summary>
    public Task PublishRawAsync(string routingKey, ReadOnlyMemory<byte> body) => PublishAsync(_rabbit!, routingKey, body, Settings.RabbitUser);

    /// <summary>
    /// Publishes raw JSON as the node would, over its own connection, with the AMQP user id of one's choosing (null: none),
    /// and the contract's content type and version header unless told otherwise.
    /// </summary>
    public async Task PublishRawAsNodeAsync(string producerId, string routingKey, ReadOnlyMemory<byte> body, string? userId = "",
        string contentType = MeteringTopology.ContentType, bool versionHeader = true)
    {
        var connection = await _nodeConnections.GetOrAdd(producerId, id => new ConnectionFactory { Uri = BrokerOf(id) }.CreateConnectionAsync($"throughput-tests:{id}"));
        await PublishAsync(connection, routingKey, body, userId == "" ? BrokerUserOf(producerId) : userId, contentType, versionHeader);
    }

    /// <summary>A new connection with the node's own broker user, as the node (or whoever stole its credentials) would open.</summary>
    public Task<IConnection> ConnectAsNodeAsync(string producerId) =>
        new ConnectionFactory { Uri = BrokerOf(producerId), AutomaticRecoveryEnabled = false }.CreateConnectionAsync($"throughput-tests:{producerId}:attacker");

    public string BrokerUserOf(string producerId) => Uri.UnescapeDataString(BrokerOf(producerId).UserInfo.Split(':')[0]);

    async Task PublishAsync(IConnection connection, string routingKey, ReadOnlyMemory<byte> body, string? userId,
        string contentType = MeteringTopology.ContentType, bool versionHeader = true)
    {
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var properties = new BasicProperties
        {
            ContentType = contentType,
            DeliveryMode = DeliveryModes.Persistent,
            UserId = userId,
            Headers = versionHeader ? new Dictionary<string, object?> { [MeteringTopology.VersionHeader] = MeteringTopology.CurrentVersion } : null,
        };
        await channel.BasicPublishAsync(MeteringExchange, routingKey, mandatory: true, properties, body);
    }

    /// <summary>A batch published by its producer's own connection when the fixture registered it, else by the platform's.</summary>
    public Task PublishAsync(MeteringBatch batch)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(batch, Json);
        return _nodeBrokers.ContainsKey(batch.ProducerId)
            ? PublishRawAsNodeAsync(batch.ProducerId, batch.Records[0].DeploymentId, body)
            : PublishRawAsync(batch.Records[0].DeploymentId, body);
    }

    public new async Task DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var connection in _nodeConnections.Values)
        {
            if (connection.IsCompletedSuccessfully) await connection.Result.DisposeAsync();
        }
        if (_rabbit is null) return;
        await Tests.DeleteMeteringTopologyAsync(_rabbit, MeteringExchange, partitions);
        await _rabbit.DisposeAsync();
    }
}

/// <summary>Spans as an exporter hands them over, from any thread; read as a copy.</summary>
public sealed class SpanLog : System.Collections.ObjectModel.Collection<System.Diagnostics.Activity>
{
    readonly Lock _gate = new();

    protected override void InsertItem(int index, System.Diagnostics.Activity item)
    {
        lock (_gate) base.InsertItem(index, item);
    }

    public System.Diagnostics.Activity[] Copy()
    {
        lock (_gate) return [.. this];
    }
}
