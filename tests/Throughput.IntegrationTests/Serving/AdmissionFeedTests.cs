using System.Collections.Concurrent;
using System.Net.Http.Json;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests.Serving;

/// <summary>
/// A serving node's admission cache follows the platform: pulled at start, pushed on every change, healed by pulls when
/// pushes are lost. Each test has its own region, so its feed sees only its own deployments.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class AdmissionFeedTests(PlatformFixture platform)
{
    const string Model = "gpt-4o-mini";

    Task<HttpClient> ServingNodeAsync() => platform.ServingNodeClientAsync("feed-test");

    async Task<AdmissionLimitChanged> PlatformLimitAsync(string deploymentId) =>
        (await platform.Operator().GetFromJsonAsync<AdmissionLimitChanged>($"/v1/admission/{deploymentId}", PlatformFixture.Json))!;

    /// <summary>The platform's pull answers trail its pushes by a moment; wait until it answers at least this version.</summary>
    Task<AdmissionLimitChanged> PlatformLimitAsync(string deploymentId, long atLeast) =>
        Eventually.Until(() => PlatformLimitAsync(deploymentId), l => l.Version >= atLeast);

    static async Task ResizeAsync(HttpClient customer, string deploymentId, decimal ptu)
    {
        var current = await customer.GetAsync($"/v1/deployments/{deploymentId}");
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{deploymentId}/resize") { Content = JsonContent.Create(new { ptu }) };
        request.Headers.IfMatch.Add(current.EnsureSuccessStatusCode().Headers.ETag!);
        (await customer.SendAsync(request)).EnsureSuccessStatusCode();
    }

    /// <summary>A feed with a node's own broker user, registered for the region.</summary>
    async Task<AdmissionFeedOptions> Options(string region) => new(platform.BrokerOf(await platform.NewServingNodeAsync(region)))
    {
        Region = region,
        Model = Model,
        ConnectionName = "admission-test-" + Guid.NewGuid().ToString("N")[..8],
        RetryDelay = TimeSpan.FromMilliseconds(50),
        MaxRetryDelay = TimeSpan.FromMilliseconds(500),
    };

    static Task<AdmissionLimitChanged> CachedAsync(AdmissionCache cache, string deploymentId, Func<AdmissionLimitChanged, bool> condition) =>
        Eventually.Until(() => Task.FromResult(cache.Limit(deploymentId)!), l => l is not null && condition(l), TimeSpan.FromSeconds(20));

    [Fact]
    public async Task A_late_starting_node_pulls_the_current_limits_of_its_scope_and_then_follows_each_resize_by_push_with_versions_only_growing()
    {
        var region = await platform.NewPoolAsync(Model, 100);
        var otherRegion = await platform.NewPoolAsync(Model, 100);
        var (_, customer) = await platform.NewTenantAsync();
        var first = await PlatformFixture.BuyAsync(customer, region, 1m, Model);
        var second = await PlatformFixture.BuyAsync(customer, region, 2m, Model);
        var elsewhere = await PlatformFixture.BuyAsync(customer, otherRegion, 1m, Model);
        await ResizeAsync(customer, first, 3m);
        var applied = new ConcurrentQueue<(AdmissionLimitChanged Limit, LimitUpdate Update)>();
        var cache = new AdmissionCache(new AdmissionCacheOptions { LimitApplied = (l, u) => applied.Enqueue((l, u)) });

        await PlatformLimitAsync(first, atLeast: 2);
        await using var feed = await AdmissionFeed.StartAsync(cache, await ServingNodeAsync(), await Options(region));

        Assert.NotNull(feed.LastSyncedAt);
        foreach (var id in new[] { first, second })
        {
            var (held, current) = (cache.Limit(id)!, await PlatformLimitAsync(id));
            Assert.Equal((current.Version, current.TokensPerMinute, current.BurstTokens, current.State), (held.Version, held.TokensPerMinute, held.BurstTokens, held.State));
        }
        Assert.Equal(3 * 37_000, cache.Limit(first)!.TokensPerMinute);
        Assert.Null(cache.Limit(elsewhere));

        for (var ptu = 4m; ptu <= 6m; ptu++) await ResizeAsync(customer, second, ptu);
        var followed = await CachedAsync(cache, second, l => l.TokensPerMinute == 6 * 37_000);

        Assert.Equal(followed.Version, (await PlatformLimitAsync(second, followed.Version)).Version);
        Assert.True(feed.PushesApplied >= 1, "the resizes arrived by push");
        var versions = applied.Where(a => a.Limit.DeploymentId == second && a.Update != LimitUpdate.Stale).Select(a => a.Limit.Version).ToList();
        Assert.Equal(versions.Order(), versions);
        Assert.Equal(versions.Count, versions.Distinct().Count());
        Assert.Null(cache.Limit(elsewhere));
    }

    [Fact]
    public async Task A_push_that_skips_a_version_makes_the_node_pull_and_a_lost_last_push_is_healed_by_the_periodic_pull()
    {
        var region = await platform.NewPoolAsync(Model, 100);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, Model);
        var lose = 0L;
        var cache = new AdmissionCache();
        await using var feed = await AdmissionFeed.StartAsync(cache, await ServingNodeAsync(), await Options(region) with
        {
            ResyncInterval = TimeSpan.FromSeconds(2),
            LosePush = limit => limit.DeploymentId == deployment && limit.Version <= Interlocked.Read(ref lose),
        });
        var start = await CachedAsync(cache, deployment, _ => true);

        // The push of the first resize is lost; the second one's arrives one version too far ahead.
        Interlocked.Exchange(ref lose, start.Version + 1);
        await ResizeAsync(customer, deployment, 2m);
        await ResizeAsync(customer, deployment, 3m);
        var healed = await CachedAsync(cache, deployment, l => l.TokensPerMinute == 3 * 37_000);
        await Eventually.Until(() => Task.FromResult(feed.GapPulls), n => n >= 1);
        Assert.Equal(healed.Version, (await PlatformLimitAsync(deployment, healed.Version)).Version);

        // The push of the last change is lost too: nothing comes after it to reveal the gap, so the periodic pull brings it.
        Interlocked.Exchange(ref lose, long.MaxValue);
        await ResizeAsync(customer, deployment, 4m);
        var pulled = await CachedAsync(cache, deployment, l => l.TokensPerMinute == 4 * 37_000);
        Assert.Equal(pulled.Version, (await PlatformLimitAsync(deployment, pulled.Version)).Version);
    }

    [Fact]
    public async Task After_the_broker_drops_the_connection_the_node_reconnects_and_pulls_what_it_missed()
    {
        var region = await platform.NewPoolAsync(Model, 100);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, Model);
        var cache = new AdmissionCache();
        var options = await Options(region);
        await using var feed = await AdmissionFeed.StartAsync(cache, await ServingNodeAsync(), options);
        await CachedAsync(cache, deployment, _ => true);

        await Broker.CloseConnectionAsync(await Broker.FindConnectionAsync(options.ConnectionName!));
        await ResizeAsync(customer, deployment, 5m); // likely while the node has no queue: its push is lost

        var limit = await CachedAsync(cache, deployment, l => l.TokensPerMinute == 5 * 37_000);
        await Eventually.Until(() => Task.FromResult(feed.Reconnects), n => n >= 1);
        Assert.Equal(limit.Version, (await PlatformLimitAsync(deployment, limit.Version)).Version);

        await ResizeAsync(customer, deployment, 6m); // and pushes flow again on the new connection
        await CachedAsync(cache, deployment, l => l.TokensPerMinute == 6 * 37_000);
    }

    [Fact]
    public async Task A_limit_the_platform_does_not_stand_behind_is_replaced_by_the_pull_after_next()
    {
        var region = await platform.NewPoolAsync(Model, 100);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, Model);
        var cache = new AdmissionCache();
        await using var feed = await AdmissionFeed.StartAsync(cache, await ServingNodeAsync(), await Options(region));
        var genuine = await CachedAsync(cache, deployment, _ => true);

        // What a forged push would have left: a huge rate at the highest version a JSON number holds exactly.
        var forged = genuine with { TokensPerMinute = 1_000_000_000_000, BurstTokens = 1_000_000_000_000, Version = 9_007_199_254_740_991 };
        Assert.NotEqual(LimitUpdate.Stale, cache.Apply(forged));
        Assert.True(await feed.ResyncAsync());
        Assert.Equal(forged.Version, cache.Limit(deployment)!.Version); // kept once: a pull may trail a genuine push

        var replaced = await CachedAsync(cache, deployment, l => l.Version < forged.Version);
        Assert.Equal(genuine.TokensPerMinute, replaced.TokensPerMinute);
        Assert.Equal(1, feed.Overruled);
    }

    [Fact]
    public async Task A_push_not_stamped_by_the_platforms_broker_user_is_ignored_even_from_a_broker_user_allowed_to_publish()
    {
        var region = await platform.NewPoolAsync(Model, 100);
        var (_, customer) = await platform.NewTenantAsync();
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1m, Model);
        var cache = new AdmissionCache();
        await using var feed = await AdmissionFeed.StartAsync(cache, await ServingNodeAsync(), await Options(region));
        var genuine = await CachedAsync(cache, deployment, _ => true);

        // A misconfigured broker: some other user may write to the admission exchange. Its pushes carry its own user id.
        var user = "tests-intruder-" + Guid.NewGuid().ToString("N")[..8];
        var settings = platform.Settings;
        using var management = new HttpClient { BaseAddress = settings.RabbitManagementEndpoints[0] };
        management.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{settings.RabbitAdminUser}:{settings.RabbitAdminPassword}")));
        (await management.PutAsJsonAsync($"api/users/{user}", new { password = "intruder", tags = "" })).EnsureSuccessStatusCode();
        try
        {
            (await management.PutAsJsonAsync($"api/permissions/{Uri.EscapeDataString(settings.RabbitVirtualHost)}/{user}", new { configure = "", write = ".*", read = "" })).EnsureSuccessStatusCode();
            await using var connection = await new RabbitMQ.Client.ConnectionFactory { Uri = platform.NodeUri(user, "intruder") }.CreateConnectionAsync();
            await using var channel = await connection.CreateChannelAsync(new RabbitMQ.Client.CreateChannelOptions(true, true));
            var forged = genuine with { TokensPerMinute = 1_000_000_000_000, Version = genuine.Version + 1 };
            await channel.BasicPublishAsync(AdmissionTopology.Exchange, AdmissionTopology.RoutingKey(region, Model, deployment), false,
                new RabbitMQ.Client.BasicProperties { UserId = user }, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(forged, PlatformFixture.Json));

            await Eventually.Until(() => Task.FromResult(feed.PushesUntrusted), n => n >= 1);
            Assert.Equal(genuine.TokensPerMinute, cache.Limit(deployment)!.TokensPerMinute);
        }
        finally
        {
            await management.DeleteAsync($"api/users/{user}");
        }
    }
}
