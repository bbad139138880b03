using System.Text.Json;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Tests.Serving;

public sealed class AdmissionJsonTests
{
    [Fact]
    public void A_pushed_limit_is_read_as_the_schema_writes_it_camel_case_with_states_as_strings_and_unknown_fields_ignored()
    {
        const string json = """
            {"deploymentId":"d-1","tenantId":"t-1","model":"gpt-4o-mini","region":"eastus","state":"Throttled",
             "tokensPerMinute":740000,"burstTokens":740000,"utilization":1.013,"retryAfterMs":2900,"spillover":false,
             "outputWeight":4,"cachedDeduction":1.0,"version":7,"changedAt":"2025-03-01T12:00:00.123Z","somethingNew":true}
            """;

        var limit = JsonSerializer.Deserialize(json, AdmissionJson.Default.AdmissionLimitChanged)!;

        Assert.Equal(new AdmissionLimitChanged("d-1", "t-1", "gpt-4o-mini", "eastus", AdmissionState.Throttled, 740_000, 740_000, 1.013m, 2_900, false, 4, 1.0m, 7,
            new DateTimeOffset(2025, 3, 1, 12, 0, 0, 123, TimeSpan.Zero)), limit);
    }

    [Fact]
    public void The_query_body_is_camel_case()
    {
        var json = JsonSerializer.Serialize(new AdmissionQuery(["a", "b"]), AdmissionJson.Default.AdmissionQuery);

        Assert.Equal("""{"deploymentIds":["a","b"]}""", json);
    }

    [Fact]
    public void The_binding_key_covers_the_scope_as_the_routing_key_spells_it()
    {
        var broker = new Uri("amqp://localhost");

        Assert.Equal("eastus.gpt-4o-mini.#", new AdmissionFeedOptions(broker) { Region = "eastus", Model = "gpt-4o-mini" }.BindingKey);
        Assert.Equal("eastus.gpt-4_1.#", new AdmissionFeedOptions(broker) { Region = "eastus", Model = "gpt-4.1" }.BindingKey);
        Assert.Equal("*.*.#", new AdmissionFeedOptions(broker).BindingKey);
        Assert.StartsWith("eastus.gpt-4_1.", AdmissionTopology.RoutingKey("eastus", "gpt-4.1", "d-1"), StringComparison.Ordinal);
    }

    [Fact]
    public void Lease_renewals_and_leases_are_camel_case_as_admission_lease_v1_has_them()
    {
        var renewal = JsonSerializer.Serialize(new AdmissionLeaseRenewal([new AdmissionDemand("d-1", 90_000)]), AdmissionJson.Default.AdmissionLeaseRenewal);
        var holding = JsonSerializer.Serialize(new AdmissionLeaseRenewal([new AdmissionDemand("d-1", 90_000, 30_000, 29_000, 1_764_849_600_123)]),
            AdmissionJson.Default.AdmissionLeaseRenewal);
        var leases = JsonSerializer.Deserialize("""
            [{"deploymentId":"d-1","replicaId":"node-a","tokensPerMinute":30000,"burstTokens":30000,"demandTokensPerMinute":90000,
              "replicas":2,"version":1764849600123,"expiresAt":"2026-12-04T12:00:01.5Z","somethingNew":1}]
            """, AdmissionJson.Default.AdmissionLeaseArray)!;

        Assert.Equal("""{"demands":[{"deploymentId":"d-1","tokensPerMinute":90000}]}""", renewal);
        Assert.Equal("""{"demands":[{"deploymentId":"d-1","tokensPerMinute":90000,"heldTokensPerMinute":30000,"heldBurstTokens":29000,"heldVersion":1764849600123}]}""",
            holding);
        Assert.Equal(new AdmissionLease("d-1", "node-a", 30_000, 30_000, 90_000, 2, 1_764_849_600_123, new DateTimeOffset(2026, 12, 4, 12, 0, 1, 500, TimeSpan.Zero)), leases.Single());
    }
}
