using System.Net.Http.Json;
using System.Text.Json;
using Marten;
using Npgsql;
using Throughput.Configuration;
using Throughput.Hosting;
using Throughput.Store;

namespace Throughput.IntegrationTests;

/// <summary>The real platform host on the real PostgreSQL and RabbitMQ that infra/services.sh started.</summary>
public sealed class PlatformFixture() : HostFixture(OperatorKey, $"tests.metering.{Guid.NewGuid():N}"[..27], Partitions)
{
    public const string OperatorKey = "tpk_kitoperator.integration-tests-operator-secret";

    /// <summary>
    /// Tests keep to a schema of their own, so hosts of demos or benchmarks on the same database never interfere;
    /// THROUGHPUT_TEST_SCHEMA_SUFFIX gives a second run of the suite (another branch's) schemas of its own too.
    /// </summary>
    public static readonly string Schema = "throughput_tests" + Environment.GetEnvironmentVariable("THROUGHPUT_TEST_SCHEMA_SUFFIX");

    const int Partitions = 4;

    public override ServiceSettings Settings { get; } = SchemaSettings();

    static ServiceSettings SchemaSettings()
    {
        Environment.SetEnvironmentVariable("THROUGHPUT_PG_SCHEMA", Schema);
        return ServiceSettings.FromEnvironment();
    }

    /// <summary>A store of a schema of its own, emptied first and created as a host would: for tests that write the log directly.</summary>
    public async Task<(ServiceSettings Settings, DocumentStore Store)> OwnSchemaAsync(string schema)
    {
        var settings = Settings with { PgSchema = schema };
        await using (var database = NpgsqlDataSource.Create(settings.PostgresConnectionString()))
        await using (var drop = database.CreateCommand($"drop schema if exists {schema} cascade"))
            await drop.ExecuteNonQueryAsync();
        var store = DocumentStore.For(options => EventStore.Configure(options, settings, ProjectionLayout.Live, Features.All));
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        return (settings, store);
    }

    public static async Task<string> BuyAsync(HttpClient customer, string region, decimal ptu, string model = "gpt-4o", string name = "d")
    {
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name, model, region, type = "Global", ptu });
        created.EnsureSuccessStatusCode();
        return (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    }
}

[CollectionDefinition(Name)]
public sealed class PlatformCollection : ICollectionFixture<PlatformFixture>
{
    public const string Name = "platform";
}
