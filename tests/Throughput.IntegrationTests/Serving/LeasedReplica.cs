using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests.Serving;

/// <summary>
/// One serving process taking leases: a registered node, a key issued under its producer id, a leased cache and its feed
/// talking to the platform through the handler given (one host, or a balancer in front of several), and a backlog asking
/// for twice the whole rate, whatever it is given.
/// </summary>
sealed class LeasedReplica : IAsyncDisposable
{
    readonly CancellationTokenSource _stop = new();
    Task _load = Task.CompletedTask;

    public required string Producer { get; init; }
    public required AdmissionCache Cache { get; init; }
    public required AdmissionFeed Feed { get; init; }

    /// <summary>Still admitting: once stopped, what its cache holds admits nothing.</summary>
    public bool Alive { get; private set; } = true;

    public AdmissionLease? Lease(string deploymentId) => Cache.Lease(deploymentId);

    public static async Task<LeasedReplica> StartAsync(PlatformFixture platform, string region, string model, HttpMessageHandler api)
    {
        var producer = await platform.NewServingNodeAsync(region);
        var key = (await (await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "ServingNode", name = producer }))
            .EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString();
        var client = new HttpClient(api) { BaseAddress = platform.Server.BaseAddress };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var cache = new AdmissionCache(new AdmissionCacheOptions { Leases = true });
        var feed = await AdmissionFeed.StartAsync(cache, client, new AdmissionFeedOptions(platform.BrokerOf(producer))
        {
            Region = region,
            Model = model,
            ConnectionName = "lease-test-" + producer,
        });
        return new LeasedReplica { Producer = producer, Cache = cache, Feed = feed };
    }

    /// <summary>Asks for 50 weighted tokens every 40 ms: 75,000 a minute, twice the whole rate of 1 PTU of gpt-4o-mini.</summary>
    public void Backlog(string deploymentId) => _load = Task.Run(async () =>
    {
        while (!_stop.IsCancellationRequested)
        {
            var admission = Cache.TryAdmit(deploymentId, 50, 0, 0);
            if (admission.IsAdmitted) Cache.Complete(admission, 50, 0, 0);
            await Task.Delay(40);
        }
    });

    /// <summary>Stops its load, then its feed (giving its leases back); once is enough.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        await _stop.CancelAsync();
        await _load;
        Alive = false;
        await Feed.DisposeAsync();
    }
}
