using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Throughput.Admission;
using Throughput.Contracts;
using Throughput.Deployments;

namespace Throughput.IntegrationTests;

/// <summary>Admission feedback on real RabbitMQ and PostgreSQL: what serving nodes are pushed and can pull.</summary>
[Collection(PlatformCollection.Name)]
public sealed class AdmissionTests(PlatformFixture platform)
{
    /// <summary>A serving node's view: its own queue bound to the admission topic for one region.</summary>
    sealed class PushListener : IAsyncDisposable
    {
        public readonly ConcurrentQueue<AdmissionLimitChanged> Received = new();
        IConnection _connection = null!;
        IChannel _channel = null!;

        public static async Task<PushListener> StartAsync(PlatformFixture platform, string bindingKey)
        {
            var listener = new PushListener();
            listener._connection = await new ConnectionFactory { Uri = platform.Settings.RabbitUri }.CreateConnectionAsync();
            listener._channel = await listener._connection.CreateChannelAsync();
            await listener._channel.ExchangeDeclareAsync(AdmissionTopology.Exchange, AdmissionTopology.ExchangeType, durable: true);
            var queue = await listener._channel.QueueDeclareAsync(exclusive: true, autoDelete: true);
            await listener._channel.QueueBindAsync(queue.QueueName, AdmissionTopology.Exchange, bindingKey);
            var consumer = new AsyncEventingBasicConsumer(listener._channel);
            consumer.ReceivedAsync += (_, delivery) =>
            {
                listener.Received.Enqueue(JsonSerializer.Deserialize<AdmissionLimitChanged>(delivery.Body.Span, AdmissionPush.Json)!);
                return Task.CompletedTask;
            };
            await listener._channel.BasicConsumeAsync(queue.QueueName, autoAck: true, consumer);
            return listener;
        }

        public async ValueTask DisposeAsync()
        {
            await _channel.DisposeAsync();
            await _connection.DisposeAsync();
        }
    }

    async Task<HttpClient> ServingNodeClient()
    {
        var issued = await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "ServingNode", name = "node" });
        return platform.Client((await issued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString());
    }

    [Fact]
    public async Task Every_change_of_limit_or_state_is_pushed_with_a_growing_version()
    {
        var (tenantId, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var producer = await platform.NewServingNodeAsync(region);
        await using var listener = await PushListener.StartAsync(platform, $"{region}.#");

        var id = await PlatformFixture.BuyAsync(customer, region, 0.1m);
        var created = await Eventually.Until(() => Task.FromResult(listener.Received.ToArray()), r => r.Any(m => m.DeploymentId == id));
        Assert.Equal((AdmissionState.Open, 250L, 1L), (created[0].State, created[0].TokensPerMinute, created[0].Version));

        var resize = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{id}/resize") { Content = JsonContent.Create(new { ptu = 0.2m }) };
        resize.Headers.IfMatch.Add(new EntityTagHeaderValue("\"1\""));
        (await customer.SendAsync(resize)).EnsureSuccessStatusCode();
        await Eventually.Until(() => Task.FromResult(listener.Received.ToArray()), r => r.Any(m => m.Version == 2 && m.TokensPerMinute == 500));

        // 520 weighted tokens into a bucket of 500: throttled, then (idle, ~6 s) released.
        var now = DateTimeOffset.UtcNow;
        await platform.PublishAsync(new MeteringBatch(1, producer, 1, now, [new MeteringRecord("x1", id, "q", 520, 0, 0, false, 0, now, now)]));
        var throttled = await Eventually.Until(() => Task.FromResult(listener.Received.ToArray()), r => r.Any(m => m.State == AdmissionState.Throttled));
        var throttle = throttled.First(m => m.State == AdmissionState.Throttled);
        Assert.Equal(3, throttle.Version);
        Assert.True(throttle.RetryAfterMs > 0);
        await Eventually.Until(() => Task.FromResult(listener.Received.ToArray()), r => r.Any(m => m.Version == 4 && m.State == AdmissionState.Open));

        Assert.Equal(HttpStatusCode.OK, (await platform.Operator().PostAsJsonAsync($"/v1/operator/tenants/{tenantId}/suspend", new { reason = "test" })).StatusCode);
        var all = await Eventually.Until(() => Task.FromResult(listener.Received.ToArray()),
            r => r.Any(m => m.State == AdmissionState.Suspended) && r.Any(m => m.Version >= 5), TimeSpan.FromSeconds(60));

        var versions = all.Where(m => m.DeploymentId == id).Select(m => m.Version).ToList();
        Assert.Equal(versions.Order(), versions); // never backwards, repeats allowed
        Assert.Equal([1L, 2, 3, 4, 5], versions.Distinct().Order());
        Assert.Equal(AdmissionState.Open, all.Last(m => m.Version == 4).State); // released from the throttle
    }

    [Fact]
    public async Task A_throttle_is_pushed_as_a_pull_reads_it_with_the_tenants_revisions_in_its_version()
    {
        var (tenantId, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var producer = await platform.NewServingNodeAsync(region);
        var id = await PlatformFixture.BuyAsync(customer, region, 0.1m);
        foreach (var change in new[] { "suspend", "reinstate" }) // the tenant's admission revision is 2 from here on
            Assert.Equal(HttpStatusCode.OK, (await platform.Operator().PostAsJsonAsync($"/v1/operator/tenants/{tenantId}/{change}", new { reason = "test" })).StatusCode);
        await using var listener = await PushListener.StartAsync(platform, $"{region}.#");

        // 400 weighted tokens into a bucket of 250: the batch that throttles pushes the state it decided on, without reading it back.
        var now = DateTimeOffset.UtcNow;
        await platform.PublishAsync(new MeteringBatch(1, producer, 1, now, [new MeteringRecord("t1", id, "q", 400, 0, 0, false, 0, now, now)]));
        var received = await Eventually.Until(() => Task.FromResult(listener.Received.ToArray()), r => r.Any(m => m.DeploymentId == id && m.State == AdmissionState.Throttled));
        var pushed = received.First(m => m.DeploymentId == id && m.State == AdmissionState.Throttled);
        var node = await ServingNodeClient();
        var pulled = await Eventually.Until(() => node.GetFromJsonAsync<AdmissionLimitChanged>($"/v1/admission/{id}", AdmissionPush.Json), p => p!.Version >= pushed.Version);

        Assert.Equal(4, pushed.Version); // created and throttled (2) + suspended and reinstated (2)
        Assert.Equal(pulled! with { Utilization = 0, RetryAfterMs = 0, ChangedAt = default }, pushed with { Utilization = 0, RetryAfterMs = 0, ChangedAt = default });
        Assert.True(pushed.Utilization >= 1.5m, $"pushed utilization {pushed.Utilization}"); // 400 of 250 (1.6) when decided; the forwarder's repeat, had it come first, drained since
        Assert.True(pushed.RetryAfterMs > 0);
    }

    [Fact]
    public async Task A_change_committed_without_the_fast_path_is_still_pushed_by_the_forwarder()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var id = await PlatformFixture.BuyAsync(customer, region, 1);
        await using var listener = await PushListener.StartAsync(platform, $"{region}.#");

        // As if the host died right after the commit: the event is in the store, nobody published it.
        await using (var session = platform.Services.GetRequiredService<IDocumentStore>().LightweightSession())
        {
            session.Events.Append(id, new SpilloverEnabled(id, DateTimeOffset.UtcNow));
            await session.SaveChangesAsync();
        }

        var pushed = await Eventually.Until(() => Task.FromResult(listener.Received.ToArray()), r => r.Any(m => m.Version == 2), TimeSpan.FromSeconds(60));
        Assert.True(pushed.First(m => m.Version == 2).Spillover);
    }

    [Fact]
    public async Task Serving_nodes_pull_one_many_or_a_region_and_check_single_requests()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var a = await PlatformFixture.BuyAsync(customer, region, 1);
        var b = await PlatformFixture.BuyAsync(customer, region, 2);
        var node = await ServingNodeClient();

        var one = await node.GetFromJsonAsync<AdmissionLimitChanged>($"/v1/admission/{a}", AdmissionPush.Json);
        Assert.Equal((AdmissionState.Open, 2500L, 2500L), (one!.State, one.TokensPerMinute, one.BurstTokens));

        var many = await (await node.PostAsJsonAsync("/v1/admission/query", new { deploymentIds = new[] { a, b, "dep-nope" } })).Content.ReadFromJsonAsync<AdmissionLimitChanged[]>(AdmissionPush.Json);
        Assert.Equal(new[] { a, b }.Order(), many!.Select(m => m.DeploymentId).Order());

        var regional = await node.GetFromJsonAsync<AdmissionLimitChanged[]>($"/v1/admission?region={region}&model=gpt-4o", AdmissionPush.Json);
        Assert.Equal(new[] { a, b }.Order(), regional!.Select(m => m.DeploymentId).Order());

        var admitted = await node.PostAsJsonAsync($"/v1/admission/{a}/check", new { estimatedTokens = 2000 });
        Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
        Assert.Equal("500", admitted.Headers.GetValues("x-ratelimit-remaining-tokens").Single());
        var refused = await node.PostAsJsonAsync($"/v1/admission/{a}/check", new { estimatedTokens = 3000 });
        Assert.Equal((HttpStatusCode)429, refused.StatusCode);
        Assert.True(long.Parse(refused.Headers.GetValues("retry-after-ms").Single()) > 0);
        Assert.True(refused.Headers.Contains("Retry-After"));

        Assert.Equal(HttpStatusCode.BadRequest, (await node.PostAsJsonAsync("/v1/admission/query", new { deploymentIds = Array.Empty<string>() })).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await node.GetAsync("/v1/admission/dep-nope")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await customer.GetAsync($"/v1/admission/{a}")).StatusCode);
    }

    [Fact]
    public async Task The_admission_table_follows_the_log_by_sequence_and_a_refresh_scans_no_table()
    {
        var store = platform.Services.GetRequiredService<IDocumentStore>();
        var table = new AdmissionTable(store, Microsoft.Extensions.Logging.Abstractions.NullLogger<AdmissionTable>.Instance);
        await using (var loading = store.Storage.Database.CreateConnection())
        {
            // The first refresh loads every document once, over a connection of its own: PostgreSQL may still count a
            // connection's earlier statements in the transaction statistics read below.
            await loading.OpenAsync();
            await table.RefreshAsync(loading, CancellationToken.None);
        }
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync();

        var (tenantId, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var id = await PlatformFixture.BuyAsync(customer, region, 1);
        var resize = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{id}/resize") { Content = JsonContent.Create(new { ptu = 2m }) };
        resize.Headers.IfMatch.Add(new EntityTagHeaderValue("\"1\""));
        (await customer.SendAsync(resize)).EnsureSuccessStatusCode();
        // Usage moves the bucket: the table reads it from the partition's usage event, not from the deployment's stream.
        var producer = await platform.NewServingNodeAsync(region);
        var now = DateTimeOffset.UtcNow;
        await platform.PublishAsync(new MeteringBatch(1, producer, 1, now, [new MeteringRecord("b1", id, "q", 100, 0, 0, false, 0, now, now)]));
        await Eventually.Until(() => customer.GetFromJsonAsync<DeploymentView>($"/v1/deployments/{id}", PlatformFixture.Json), d => d!.Bucket.MeteredRecords == 1);
        (await platform.Operator().PostAsJsonAsync($"/v1/operator/tenants/{tenantId}/suspend", new { reason = "test" })).EnsureSuccessStatusCode();

        // pg_stat_xact_user_tables counts what this connection's transaction did, whatever the other hosts' work meanwhile.
        await using var transaction = await connection.BeginTransactionAsync();
        // On a young schema the log is small enough that the planner would rather read it whole: asked not to, it still
        // does when no index serves the refresh, which is what this is about.
        await using (var indexesFirst = new Npgsql.NpgsqlCommand("set local enable_seqscan = off", connection)) await indexesFirst.ExecuteNonQueryAsync();
        await table.RefreshAsync(connection, CancellationToken.None);
        await table.RefreshAsync(connection, CancellationToken.None);
        await using var stats = new Npgsql.NpgsqlCommand(
            "select coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) from pg_stat_xact_user_tables where schemaname = @schema and relname = 'mt_events'", connection);
        stats.Parameters.AddWithValue("schema", store.Options.Events.DatabaseSchemaName);
        await using var reader = await stats.ExecuteReaderAsync();
        await reader.ReadAsync();
        var (sequential, indexed) = (reader.GetInt64(0), reader.GetInt64(1));

        var deployment = table.Deployments.Single(d => d.Id == id);
        Assert.Equal((2m, 2L), (deployment.Ptu, deployment.Version));
        Assert.Equal(100m, deployment.BucketLevel); // 100 weighted tokens into an empty bucket, as metered
        Assert.True(deployment.BucketAt >= now, $"bucket at {deployment.BucketAt:O}, metered after {now:O}");
        Assert.Equal(Throughput.Tenants.TenantStatus.Suspended, table.TenantOf(deployment)!.Status);
        Assert.Equal(0, sequential);
        Assert.True(indexed >= 2, $"{indexed} index scans of the log for two refreshes");
    }
}
