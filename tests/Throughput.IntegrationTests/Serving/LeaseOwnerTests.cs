using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Throughput.Admission;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests.Serving;

/// <summary>
/// Leases with more than one API host, and leases pushed: one lease owner answers for every host, so the shares of a
/// deployment renewed through several hosts still sum to its purchase; a share that grows reaches its replica by push,
/// in every region the deployment is placed in, as do its limits.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class LeaseOwnerTests(PlatformFixture platform)
{
    [Fact]
    public async Task Shares_of_one_deployment_renewed_through_two_api_hosts_never_sum_to_more_than_the_purchase()
    {
        const string model = "gpt-4o-mini";
        const long rate = 37_000; // 1 PTU
        await using var second = platform.WithWebHostBuilder(host => host.UseSetting("Host:Roles", "Api"));
        var region = await platform.NewPoolAsync(model, 10);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, model);
        var replicas = new List<LeasedReplica>();
        try
        {
            foreach (var host in new WebApplicationFactory<Program>[] { platform, second, platform, second })
            {
                replicas.Add(await LeasedReplica.StartAsync(platform, region, model, host.Server.CreateHandler()));
                replicas[^1].Backlog(deployment);
            }
            var operators = new[] { platform.Operator(), Operator(second) };

            // Both hosts list the one owner's table: the same four leases, a quarter each, never more than the purchase in all.
            var listed = new List<AdmissionLease[]>();
            await Eventually.Until(async () =>
            {
                var both = await Task.WhenAll(operators.Select(o => o.GetFromJsonAsync<AdmissionLease[]>($"/v1/admission/leases/{deployment}", PlatformFixture.Json)));
                listed.AddRange(both!);
                return both;
            }, both => both.All(leases => leases!.Length == 4 && leases.All(l => Math.Abs(l.TokensPerMinute - rate / 4) <= 1)), TimeSpan.FromSeconds(15));

            Assert.All(listed, leases => Assert.InRange(leases.Sum(l => l.TokensPerMinute), 0, rate));
            Assert.All(listed, leases => Assert.InRange(leases.Sum(l => l.BurstTokens), 0, rate));
            // What the replicas hold, each through its own host: a quarter each too (each host alone would have given halves).
            var held = await Eventually.Until(() => Task.FromResult(replicas.Select(r => r.Cache.Lease(deployment)?.TokensPerMinute ?? 0).ToList()),
                shares => shares.All(s => Math.Abs(s - rate / 4) <= 1), TimeSpan.FromSeconds(5));
            Assert.InRange(held.Sum(), rate - 4, rate);
        }
        finally
        {
            foreach (var replica in replicas) await replica.DisposeAsync();
        }
    }

    [Fact]
    public async Task When_the_lease_owner_moves_to_another_host_the_shares_held_never_sum_to_more_than_the_purchase_and_grow_again_after_the_ttl()
    {
        const string model = "gpt-4o-mini";
        const long rate = 37_000; // 1 PTU; its burst is as large
        var ownerOfFirst = platform.Services.GetRequiredService<LeaseOwner>();
        await using var second = platform.WithWebHostBuilder(host => host.UseSetting("Host:Roles", "Api"));
        var region = await platform.NewPoolAsync(model, 10);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, model);
        // A balancer in front of the two hosts: a renews through the first while it is up, b through the second.
        var balancer = new Balancer(platform.Server.CreateHandler(), second.Server.CreateHandler());
        var a = await LeasedReplica.StartAsync(platform, region, model, balancer);
        var b = await LeasedReplica.StartAsync(platform, region, model, second.Server.CreateHandler());
        var samples = new List<(long Rate, long Burst)>();
        using var sampling = new CancellationTokenSource();
        var sampler = Task.CompletedTask;
        try
        {
            a.Backlog(deployment);
            b.Backlog(deployment);
            await Eventually.Until(() => Task.FromResult(new[] { a, b }.Select(r => r.Cache.Lease(deployment)?.TokensPerMinute ?? 0).ToList()),
                shares => shares.All(s => s == rate / 2), TimeSpan.FromSeconds(15));
            // What every running replica holds in a live lease, as often as the machine allows, from before the owner moves until
            // its shares grow again. A lease past its expiry is left out: its holder's renewals did not get through for a TTL (a
            // stalled machine), so its share was free to go to the others, which is the "platform out of reach" case of
            // docs/replicas.md, not a change of owner.
            sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    var now = DateTimeOffset.UtcNow;
                    var held = new[] { a, b }.Where(r => r.Alive).Select(r => r.Cache.Lease(deployment)).OfType<AdmissionLease>().Where(l => l.ExpiresAt > now).ToList();
                    lock (samples) samples.Add((held.Sum(l => l.TokensPerMinute), held.Sum(l => l.BurstTokens)));
                    await Task.Delay(2);
                }
            });

            // The first host loses its lease owner (as when it loses the broker) and the balancer sends a's renewals to the
            // second, whose owner takes over with an empty table while a and b hold halves from the first.
            balancer.FirstDown = true;
            await ownerOfFirst.StopAsync(CancellationToken.None);
            var renewed = b.Feed.LeaseRenewals;
            await Eventually.Until(() => Task.FromResult(b.Feed.LeaseRenewals), n => n >= renewed + 2, TimeSpan.FromSeconds(10));
            // b stops; its half goes to a, but only once the new owner's first TTL is over.
            await b.DisposeAsync();
            var whole = await Eventually.Until(() => Task.FromResult(a.Cache.Lease(deployment)), l => l?.TokensPerMinute == rate, TimeSpan.FromSeconds(10));
            Assert.Equal(rate, whole!.BurstTokens);
        }
        finally
        {
            await sampling.CancelAsync();
            await sampler;
            await a.DisposeAsync();
            await b.DisposeAsync();
            await second.DisposeAsync();
            // The first host's owner is the only one again: wait out its own first TTL, so that the next test's first lease grants something.
            await ownerOfFirst.StartAsync(CancellationToken.None);
            using var probe = await platform.ServingNodeClientAsync(await platform.NewServingNodeAsync(region));
            await Eventually.Until(async () =>
            {
                using var renewal = await probe.PostAsJsonAsync("/v1/admission/leases", new AdmissionLeaseRenewal([new AdmissionDemand(deployment, 1_000)]));
                return renewal.IsSuccessStatusCode ? (await renewal.Content.ReadFromJsonAsync<AdmissionLease[]>(PlatformFixture.Json))!.Single().TokensPerMinute : 0;
            }, share => share > 0, TimeSpan.FromSeconds(15));
        }
        Assert.True(samples.Count > 100, $"{samples.Count} samples");
        Assert.True(samples.Count(s => s.Rate > 0) > samples.Count / 2, "most samples see a live lease");
        Assert.All(samples, s => Assert.InRange(s.Rate, 0, rate));
        Assert.All(samples, s => Assert.InRange(s.Burst, 0, rate));
    }

    /// <summary>Sends each request to the first host while it is up, else to the second, as a load balancer would.</summary>
    sealed class Balancer(HttpMessageHandler first, HttpMessageHandler second) : HttpMessageHandler
    {
        readonly HttpMessageInvoker _first = new(first);
        readonly HttpMessageInvoker _second = new(second);

        public volatile bool FirstDown;

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            (FirstDown ? _second : _first).SendAsync(request, cancellationToken);
    }

    HttpClient Operator(WebApplicationFactory<Program> host)
    {
        var client = host.CreateClient();
        client.DefaultRequestHeaders.Authorization = platform.Operator().DefaultRequestHeaders.Authorization;
        return client;
    }

    [Fact]
    public async Task A_share_that_grows_is_pushed_to_its_replica_and_limits_and_leases_reach_every_region_the_deployment_is_placed_in()
    {
        const string model = "gpt-4.1-nano"; // no other test buys it in the geography's shared regions
        await FreeAsync(model, new() { ["eastus"] = 0.5m, ["eastus2"] = 0.5m });
        var east = await platform.NewServingNodeAsync("eastus");
        var east2 = await platform.NewServingNodeAsync("eastus2");
        await using var connection = await platform.ConnectAsNodeAsync(east2);
        await using var channel = await connection.CreateChannelAsync();
        var queue = (await channel.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true)).QueueName;
        await channel.QueueBindAsync(queue, AdmissionTopology.Exchange, $"eastus2.{model.Replace('.', '_')}.#");
        await channel.QueueBindAsync(queue, AdmissionLeaseTopology.Exchange, $"eastus2.{model.Replace('.', '_')}.#");
        var received = Channel.CreateUnbounded<(string Exchange, string RoutingKey, JsonElement Body)>();
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, d) =>
        {
            received.Writer.TryWrite((d.Exchange, d.RoutingKey, JsonSerializer.Deserialize<JsonElement>(d.Body.Span)));
            return Task.CompletedTask;
        };
        await channel.BasicConsumeAsync(queue, autoAck: true, consumer);

        // Bought in eastus, which has room for half of it: placed in eastus and eastus2.
        var (_, customer) = await platform.NewTenantAsync();
        var created = await (await customer.PostAsJsonAsync("/v1/deployments", new { name = "split", model, region = "eastus", type = "Global", ptu = 1m }))
            .EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>();
        var deployment = created.GetProperty("id").GetString()!;
        Assert.Equal(2, created.GetProperty("placement").GetArrayLength());
        var limit = await NextAsync(received, m => m.Exchange == AdmissionTopology.Exchange && m.Body.GetProperty("deploymentId").GetString() == deployment);
        Assert.Equal($"eastus2.{model.Replace('.', '_')}.{deployment}", limit.RoutingKey); // a limit pushed to a region it was not bought in
        var rate = limit.Body.GetProperty("tokensPerMinute").GetInt64();

        using var eastApi = await platform.ServingNodeClientAsync(east);
        using var east2Api = await platform.ServingNodeClientAsync(east2);
        var eastLease = await RenewAsync(eastApi, deployment);
        var east2Lease = await RenewAsync(east2Api, deployment);
        Assert.Equal((rate, 0L), (eastLease.TokensPerMinute, east2Lease.TokensPerMinute)); // east holds it all until it renews
        eastLease = await RenewAsync(eastApi, deployment);

        // east gave up half; eastus2's replica hears of its grown share by push, without renewing.
        var pushed = await NextAsync(received, m => m.Exchange == AdmissionLeaseTopology.Exchange && m.Body.GetProperty("replicaId").GetString() == east2);
        Assert.Equal($"eastus2.{model.Replace('.', '_')}.{deployment}", pushed.RoutingKey);
        var lease = pushed.Body.Deserialize<AdmissionLease>(PlatformFixture.Json)!;
        Assert.Equal((deployment, rate - eastLease.TokensPerMinute), (lease.DeploymentId, lease.TokensPerMinute));
        Assert.True(lease.TokensPerMinute > 0);
        Assert.True(lease.Version > east2Lease.Version);
    }

    static async Task<AdmissionLease> RenewAsync(HttpClient node, string deployment)
    {
        var response = await node.PostAsJsonAsync("/v1/admission/leases", new AdmissionLeaseRenewal([new AdmissionDemand(deployment, 1_000_000)]));
        return Assert.Single((await response.EnsureSuccessStatusCode().Content.ReadFromJsonAsync<AdmissionLease[]>(PlatformFixture.Json))!);
    }

    static async Task<(string Exchange, string RoutingKey, JsonElement Body)> NextAsync(
        Channel<(string Exchange, string RoutingKey, JsonElement Body)> received, Func<(string Exchange, string RoutingKey, JsonElement Body), bool> wanted)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var message = await received.Reader.ReadAsync(timeout.Token);
            if (wanted(message)) return message;
        }
    }

    /// <summary>Every us region's pool of the model with exactly this much free (0 where not named): the regions are shared by every test run on the schema.</summary>
    async Task FreeAsync(string model, Dictionary<string, decimal> free)
    {
        var pools = (await platform.Operator().GetFromJsonAsync<JsonElement>("/v1/operator/pools")).EnumerateArray()
            .Where(p => p.GetProperty("model").GetString() == model)
            .ToDictionary(p => p.GetProperty("region").GetString()!, p => p.GetProperty("soldPtu").GetDecimal());
        foreach (var region in new[] { "eastus", "eastus2", "westus3", "swedencentral", "westeurope", "francecentral" })
            (await platform.Operator().PutAsJsonAsync($"/v1/operator/pools/{model}/{region}",
                new { capacityPtu = pools.GetValueOrDefault(region) + free.GetValueOrDefault(region) })).EnsureSuccessStatusCode();
    }
}
