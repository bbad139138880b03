using System.Net.Http.Json;
using System.Text.Json;
using Marten;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Throughput.Configuration;
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
public sealed class InvoicingFixture() : HostFixture(OperatorKey, $"tests.invoicing.{Guid.NewGuid():N}"[..28], Partitions)
{
    public static readonly string Schema = "throughput_invoicing_tests" + Environment.GetEnvironmentVariable("THROUGHPUT_TEST_SCHEMA_SUFFIX");
    public const string OperatorKey = "tpk_kinvoicingop.invoicing-tests-operator-secret";

    const int Partitions = 2;
    long _sequence = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;

    public SettableClock Clock { get; } = new(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public override ServiceSettings Settings { get; } = ServiceSettings.FromEnvironment() with { PgSchema = Schema };

    /// <summary>
    /// A geography of two regions no earlier run has used, added to the shipped catalog: Forge's figures for it are this
    /// run's alone, whatever the schema kept from earlier runs.
    /// </summary>
    public (string Name, string[] Regions) Geography { get; } =
        ("g" + Guid.NewGuid().ToString("N")[..10], ["ga" + Guid.NewGuid().ToString("N")[..10], "gb" + Guid.NewGuid().ToString("N")[..10]]);

    string CatalogWithGeography()
    {
        var catalog = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Catalog", "catalog.json")))!;
        catalog["geographies"]![Geography.Name] = new System.Text.Json.Nodes.JsonArray([.. Geography.Regions.Select(r => (System.Text.Json.Nodes.JsonNode)r)]);
        var path = Path.Combine(Path.GetTempPath(), $"throughput-catalog-{Geography.Name}.json");
        File.WriteAllText(path, catalog.ToJsonString());
        return path;
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        base.ConfigureWebHost(builder);
        builder.UseSetting("THROUGHPUT_PG_SCHEMA", Schema);
        builder.UseSetting("Catalog:Path", CatalogWithGeography());
        builder.UseSetting("Invoicing:AutoIssue", "false");
        builder.UseSetting("Invoicing:CatchUpTimeout", "00:00:20");
        // Alerts' webhooks go to a receiver on loopback (AlertTests).
        builder.UseSetting("Webhooks:AllowedHosts", "127.0.0.1");
        builder.UseSetting("Webhooks:AllowHttp", "true");
        builder.UseSetting("Webhooks:SecretKey", Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        builder.UseSetting("Webhooks:PollInterval", "00:00:00.200");
        builder.UseSetting("Alerts:InvoiceEvery", "00:00:00.200");
        builder.ConfigureServices(services => services.AddSingleton<TimeProvider>(Clock));
    }

    public IDocumentStore Store => Services.GetRequiredService<IDocumentStore>();

    public async Task<HttpClient> FinanceAsync()
    {
        var issued = await Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "Finance", name = "finance" });
        issued.EnsureSuccessStatusCode();
        return Client((await issued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString());
    }

    /// <summary>One batch of records from a serving node, stamped with the tests' clock.</summary>
    public Task PublishAsync(string producer, params MeteringRecord[] records) =>
        PublishAsync(new MeteringBatch(1, producer, Interlocked.Increment(ref _sequence), Clock.GetUtcNow(), records));
}

[CollectionDefinition(Name)]
public sealed class InvoicingCollection : ICollectionFixture<InvoicingFixture>
{
    public const string Name = "invoicing";
}
