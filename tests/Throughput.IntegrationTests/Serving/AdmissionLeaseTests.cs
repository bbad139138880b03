using System.Net.Http.Json;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests.Serving;

/// <summary>
/// Several serving processes on one deployment, each with its own registration, key, cache and feed, against the real
/// host: they share the purchased rate through leases, and a process that stops gives its share to the others.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class AdmissionLeaseTests(PlatformFixture platform)
{
    // 1 PTU of gpt-4o-mini, weighted tokens a minute; the burst is one minute of it.
    const long Rate = 37_000;
    const string Model = "gpt-4o-mini";

    Task<LeasedReplica> ReplicaAsync(string region) => LeasedReplica.StartAsync(platform, region, Model, platform.Server.CreateHandler());

    Task<AdmissionLease[]> LeasesAsync(string deploymentId) =>
        platform.Operator().GetFromJsonAsync<AdmissionLease[]>($"/v1/admission/leases/{deploymentId}", PlatformFixture.Json)!;

    [Fact]
    public async Task Replicas_of_one_deployment_share_its_rate_and_burst_and_a_replica_that_stops_leaves_its_share_to_the_others()
    {
        var region = await platform.NewPoolAsync(Model, 10);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, Model);
        await using var a = await ReplicaAsync(region);
        await using var b = await ReplicaAsync(region);
        var c = await ReplicaAsync(region);
        foreach (var replica in new[] { a, b, c }) replica.Backlog(deployment);

        var shared = await Eventually.Until(() => LeasesAsync(deployment),
            leases => leases.Length == 3 && leases.All(l => Math.Abs(l.TokensPerMinute - Rate / 3) <= 1), TimeSpan.FromSeconds(10));
        Assert.Equal(Rate, shared.Sum(l => l.TokensPerMinute));
        Assert.Equal(Rate, shared.Sum(l => l.BurstTokens));
        // The owner's list changes first; each replica holds its new share at its next renewal or the owner's push.
        foreach (var replica in new[] { a, b, c })
            await Eventually.Until(() => Task.FromResult(replica.Lease(deployment)!.TokensPerMinute), tpm => Math.Abs(tpm - Rate / 3) <= 1, TimeSpan.FromSeconds(2));

        await c.DisposeAsync();
        var afterStop = await Eventually.Until(() => LeasesAsync(deployment),
            leases => leases.Length == 2 && leases.All(l => l.TokensPerMinute == Rate / 2), TimeSpan.FromSeconds(5));

        Assert.Equal(new[] { a.Producer, b.Producer }.Order(StringComparer.Ordinal), afterStop.Select(l => l.ReplicaId).Order(StringComparer.Ordinal));
        await Eventually.Until(() => Task.FromResult(a.Lease(deployment)!.TokensPerMinute + b.Lease(deployment)!.TokensPerMinute), sum => sum == Rate, TimeSpan.FromSeconds(2));
        // c's release grew both shares at once, and the owner pushed them: the feeds heard of them, not only their next renewals.
        await Eventually.Until(() => Task.FromResult(a.Feed.LeasePushes + b.Feed.LeasePushes), pushes => pushes >= 2, TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task A_node_renews_only_its_own_leases_and_only_for_deployments_its_registration_covers()
    {
        var region = await platform.NewPoolAsync(Model, 10);
        var elsewhere = await platform.NewPoolAsync(Model, 10);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, Model);
        var renewal = new AdmissionLeaseRenewal([new AdmissionDemand(deployment, 10_000)]);

        var foreign = await (await platform.ServingNodeClientAsync(await platform.NewServingNodeAsync(elsewhere))).PostAsJsonAsync("/v1/admission/leases", renewal);
        var unnamed = await platform.Operator().PostAsJsonAsync("/v1/admission/leases", renewal);
        var node = await platform.ServingNodeClientAsync(await platform.NewServingNodeAsync(region));
        var runaway = await node.PostAsJsonAsync("/v1/admission/leases", new AdmissionLeaseRenewal([new AdmissionDemand(deployment, 10_000, 5_000, 5_000, long.MaxValue)]));
        var own = await node.PostAsJsonAsync("/v1/admission/leases", renewal);

        Assert.Equal(System.Net.HttpStatusCode.Forbidden, foreign.StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, unnamed.StatusCode);
        // A held version a node could run the deployment's lease versions to overflow with is refused, naming the field.
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, runaway.StatusCode);
        Assert.Contains("heldVersion", await runaway.Content.ReadAsStringAsync(), StringComparison.OrdinalIgnoreCase);
        var lease = Assert.Single((await own.EnsureSuccessStatusCode().Content.ReadFromJsonAsync<AdmissionLease[]>(PlatformFixture.Json))!);
        Assert.Equal((Rate, Rate, 1), (lease.TokensPerMinute, lease.BurstTokens, lease.Replicas));
        Assert.Single(await LeasesAsync(deployment));
    }
}
