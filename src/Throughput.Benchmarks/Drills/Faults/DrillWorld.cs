using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Flywheel.Demo;
using Throughput.Flywheel.Load;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>Spillover prices per 1M tokens of the drill's model, in the tenants' currency.</summary>
public sealed record SpilloverPrices(decimal Input, decimal Cached, decimal Output);

/// <summary>
/// What the drill sets up on the platform before any fault: a pool in a region of its own, three customers (each a tenant
/// with one deployment, two of them with spillover on), and the serving nodes registered for the region with their keys.
/// Every client it opens points at the host's address, which stays the same across the host's restarts.
/// </summary>
public sealed class DrillWorld : IDisposable
{
    public const string Currency = "USD";

    readonly List<HttpClient> _clients = [];

    DrillWorld(Uri platform) => Platform = platform;

    public Uri Platform { get; }

    public string Region { get; private set; } = "";

    public string Model { get; private set; } = "";

    public IReadOnlyList<DrillDeployment> Deployments { get; private set; } = [];

    /// <summary>Producer id → a client with the node's ServingNode key.</summary>
    public IReadOnlyDictionary<string, HttpClient> ServingNodes { get; private set; } = new Dictionary<string, HttpClient>();

    /// <summary>Each serving node's own broker credentials, as registering it issued them.</summary>
    public IReadOnlyDictionary<string, ServingNodeAccess> NodeAccess { get; private set; } = new Dictionary<string, ServingNodeAccess>();

    public SpilloverPrices Prices { get; private set; } = new(0, 0, 0);

    /// <summary>
    /// The customers are pushed past what they bought (1.5–2×) and their traffic is shared by every node. In the fault
    /// drill each node admits within its own lease (what is over its share waits, or spills over); in the HA drill each
    /// follows the whole purchased rate, so the platform's own bucket is what binds, and it throttles.
    /// </summary>
    static IReadOnlyList<(Customer Customer, bool Spillover)> Customers =>
    [
        (new Customer("Contoso Docs", Workload.DocumentCreation, Ptu: 100m, OfferedFactor: 1.5), false),
        (new Customer("Fabrikam Digest", Workload.Summarization, Ptu: 100m, OfferedFactor: 1.5), true),
        (new Customer("Northwind Chat", Workload.Chat, Ptu: 50m, OfferedFactor: 2), true),
    ];

    public static async Task<DrillWorld> SetUpAsync(Uri platform, string operatorKey, string run, string model, IReadOnlyList<string> producers, CancellationToken ct)
    {
        var world = new DrillWorld(platform) { Region = $"faults-{run}", Model = model };
        try
        {
            var op = world.ClientFor(operatorKey);
            var scenario = new Scenario { Model = model, Region = world.Region, Customers = [.. Customers.Select(c => c.Customer)] };
            await PlatformSetup.EnsurePoolAsync(op, model, world.Region, scenario.PtuNeeded, ct);
            var nodes = new Dictionary<string, HttpClient>(StringComparer.Ordinal);
            var access = new Dictionary<string, ServingNodeAccess>(StringComparer.Ordinal);
            foreach (var producer in producers)
            {
                access[producer] = await PlatformSetup.RegisterServingNodeAsync(op, producer, world.Region, ct);
                nodes[producer] = world.ClientFor(access[producer].ApiKey);
            }
            world.ServingNodes = nodes;
            world.NodeAccess = access;

            var deployments = new List<DrillDeployment>();
            foreach (var (customer, spillover) in Customers)
            {
                var provisioned = await PlatformSetup.ProvisionAsync(op, world.ClientFor, customer, scenario, run, ct);
                if (spillover)
                {
                    using var on = await provisioned.Tenant.PutAsJsonAsync($"/v1/deployments/{provisioned.DeploymentId}/spillover", new { enabled = true }, ct);
                    on.EnsureSuccessStatusCode();
                }
                deployments.Add(new DrillDeployment(provisioned, spillover, customer.OfferedFactor));
            }
            world.Deployments = deployments;
            world.Prices = await PricesAsync(op, model, ct);
            return world;
        }
        catch
        {
            world.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var client in _clients) client.Dispose();
    }

    HttpClient ClientFor(string apiKey)
    {
        var client = new HttpClient { BaseAddress = Platform, Timeout = TimeSpan.FromSeconds(15) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        _clients.Add(client);
        return client;
    }

    static async Task<SpilloverPrices> PricesAsync(HttpClient op, string model, CancellationToken ct)
    {
        var models = await op.GetFromJsonAsync<JsonElement>("/v1/models", ct);
        foreach (var entry in models.EnumerateArray())
        {
            if (entry.GetProperty("name").GetString() != model) continue;
            var prices = entry.GetProperty("prices").GetProperty(Currency);
            return new SpilloverPrices(prices.GetProperty("spilloverInputPerMillion").GetDecimal(),
                prices.GetProperty("spilloverCachedPerMillion").GetDecimal(), prices.GetProperty("spilloverOutputPerMillion").GetDecimal());
        }
        throw new InvalidOperationException($"the catalog has no model '{model}'");
    }
}
