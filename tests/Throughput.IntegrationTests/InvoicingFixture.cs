using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Marten;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;
using Throughput.Contracts;
using Throughput.Hosting;
using Throughput.Metering;

namespace Throughput.IntegrationTests;

/// <summary>A wall clock the tests set: invoices are about months, and a test cannot wait for one to end.</summary>
public sealed class SettableClock(DateTimeOffset start) : TimeProvider
{
    long _ticks = start.UtcTicks;

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public void Set(DateTimeOffset now) => Interlocked.Exchange(ref _ticks, now.UtcTicks);
}

/// <summary>
/// The real platform host for invoicing stories, in a schema of its own (<see cref="Schema"/>) with its own daemon
/// lock, metering exchange and a clock the tests set. A schema of its own matters: its projection daemon is the only
/// one that runs these projections, whatever other hosts on the machine (other branches' tests) are doing.
/// Automatic issuing is off; tests call the issuer when they want it.
/// </summary>
public sealed class InvoicingFixture : WebApplicationFactory<Program>, IAsyncLifetime
{
    public const string Schema = "throughput_invoicing_tests";
    public const string OperatorKey = "tpk_kinvoicingop.invoicing-tests-operator-secret";

    public static readonly JsonSerializerOptions Json = PlatformFixture.Json;

    public SettableClock Clock { get; } = new(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public ServiceSettings Settings { get; } = ServiceSettings.FromEnvironment() with { PgSchema = Schema };

    public string MeteringExchange { get; } = $"tests.invoicing.{Guid.NewGuid():N}"[..28];

    const int Partitions = 2;
    IConnection? _rabbit;
    long _sequence = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("Access:BootstrapOperatorKey", OperatorKey);
        builder.UseSetting("Metering:Exchange", MeteringExchange);
        builder.UseSetting("Metering:QueuePrefix", MeteringExchange + ".p");
        builder.UseSetting("Metering:Partitions", Partitions.ToString(System.Globalization.CultureInfo.InvariantCulture));
        builder.UseSetting("Invoicing:AutoIssue", "false");
        builder.UseSetting("Invoicing:CatchUpTimeout", "00:00:20");
        builder.ConfigureServices(services =>
        {
            services.AddSingleton<TimeProvider>(Clock);
            services.ConfigureMarten(opts =>
            {
                opts.DatabaseSchemaName = Schema;
                opts.Events.DatabaseSchemaName = Schema;
                opts.Projections.DaemonLockId = BitConverter.ToInt32(System.Security.Cryptography.SHA256.HashData("throughput-daemon:"u8.ToArray().Concat(System.Text.Encoding.UTF8.GetBytes(Schema)).ToArray()));
                opts.Storage.ExtendedSchemaObjects.Add(AppliedBatches.Definition(Schema));
            });
        });
    }

    public async Task InitializeAsync()
    {
        _ = Server;
        _rabbit = await new ConnectionFactory { Uri = Settings.RabbitUri }.CreateConnectionAsync("throughput-invoicing-tests");
    }

    public IDocumentStore Store => Services.GetRequiredService<IDocumentStore>();

    public HttpClient Client(string? apiKey)
    {
        var client = CreateClient();
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    public HttpClient Operator() => Client(OperatorKey);

    public async Task<HttpClient> FinanceAsync()
    {
        var issued = await Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "Finance", name = "finance" });
        issued.EnsureSuccessStatusCode();
        return Client((await issued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString());
    }

    public async Task<(string TenantId, HttpClient Client)> NewTenantAsync(string currency = "USD")
    {
        var tenantId = "t-" + Guid.NewGuid().ToString("N")[..12];
        var op = Operator();
        (await op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = "Tenant " + tenantId, currency })).EnsureSuccessStatusCode();
        var issued = await (await op.PostAsync($"/v1/operator/tenants/{tenantId}/keys", null)).Content.ReadFromJsonAsync<JsonElement>();
        return (tenantId, Client(issued.GetProperty("apiKey").GetString()));
    }

    public async Task<string> NewPoolAsync(string model, decimal capacityPtu)
    {
        var region = "r" + Guid.NewGuid().ToString("N")[..10];
        (await Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/{region}", new { capacityPtu })).EnsureSuccessStatusCode();
        return region;
    }

    public async Task<string> NewServingNodeAsync(params string[] regions)
    {
        var producerId = "node-" + Guid.NewGuid().ToString("N")[..10];
        (await Operator().PutAsJsonAsync($"/v1/operator/serving-nodes/{producerId}", new { regions, tenants = Array.Empty<string>(), brokerUser = Settings.RabbitUser })).EnsureSuccessStatusCode();
        return producerId;
    }

    public async Task PublishAsync(string producer, params MeteringRecord[] records)
    {
        var batch = new MeteringBatch(1, producer, Interlocked.Increment(ref _sequence), Clock.GetUtcNow(), records);
        await using var channel = await _rabbit!.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var properties = new BasicProperties
        {
            ContentType = MeteringTopology.ContentType,
            DeliveryMode = DeliveryModes.Persistent,
            UserId = Settings.RabbitUser,
            Headers = new Dictionary<string, object?> { [MeteringTopology.VersionHeader] = MeteringTopology.CurrentVersion },
        };
        await channel.BasicPublishAsync(MeteringExchange, records[0].DeploymentId, mandatory: true, properties, JsonSerializer.SerializeToUtf8Bytes(batch, Json));
    }

    public new async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (_rabbit is null) return;
        await Tests.DeleteMeteringTopologyAsync(_rabbit, MeteringExchange, Partitions);
        await _rabbit.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class InvoicingCollection : ICollectionFixture<InvoicingFixture>
{
    public const string Name = "invoicing";
}
