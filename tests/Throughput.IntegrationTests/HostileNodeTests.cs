using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using RabbitMQ.Client;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests;

/// <summary>
/// An attacker holding one serving node's own broker credentials, against the real broker and platform: every way it
/// could write where it must not is refused by the broker, and nothing it tries changes billing, queues or limits.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class HostileNodeTests(PlatformFixture platform)
{
    const ushort AccessRefused = 403;

    static MeteringRecord Record(string id, string deploymentId, long prompt = 1000) =>
        new(id, deploymentId, "r-" + id, prompt, 0, 10, false, 0, DateTimeOffset.UtcNow.AddSeconds(-2), DateTimeOffset.UtcNow.AddSeconds(-1));

    /// <summary>Runs the attempt on a channel of its own and waits for the broker to close that channel with access refused.</summary>
    static async Task AssertRefusedAsync(IConnection connection, Func<IChannel, Task> attempt)
    {
        var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        try
        {
            await attempt(channel);
        }
        catch (Exception e) when (e is RabbitMQ.Client.Exceptions.RabbitMQClientException or RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            // The refusal itself: the broker closed the channel.
        }
        await Eventually.Until(() => Task.FromResult(channel.IsOpen), open => !open, TimeSpan.FromSeconds(5));
        Assert.Equal(AccessRefused, channel.CloseReason!.ReplyCode);
        Assert.True(connection.IsOpen); // a refused operation costs the channel, not the connection
    }

    async Task<(HttpClient Customer, string Deployment, string Region)> VictimAsync()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        return (customer, await PlatformFixture.BuyAsync(customer, region, 1), region);
    }

    [Fact]
    public async Task A_node_cannot_capture_read_or_purge_metering_nor_write_admission_limits()
    {
        var (customer, deployment, region) = await VictimAsync();
        var attacker = await platform.NewServingNodeAsync(region);
        await using var connection = await platform.ConnectAsNodeAsync(attacker);
        var partition = platform.MeteringExchange + ".p0";
        var before = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals");

        // (b) a queue of its own bound to the metering exchange, to capture every batch.
        await AssertRefusedAsync(connection, c => c.QueueDeclareAsync("capture", durable: false, exclusive: true, autoDelete: true));
        await AssertRefusedAsync(connection, async c =>
        {
            var own = await c.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true);
            await c.QueueBindAsync(own.QueueName, platform.MeteringExchange, "1000");
        });
        // (c) the partition queues: consume, get, purge, delete, re-declare.
        await AssertRefusedAsync(connection, c => c.BasicConsumeAsync(partition, autoAck: true, new AsyncEventingBasicConsumerStub(c)));
        await AssertRefusedAsync(connection, c => c.BasicGetAsync(partition, autoAck: true));
        await AssertRefusedAsync(connection, c => c.QueuePurgeAsync(partition));
        await AssertRefusedAsync(connection, c => c.QueueDeleteAsync(partition));
        await AssertRefusedAsync(connection, c => c.ExchangeDeleteAsync(platform.MeteringExchange));
        // (e) admission limits: publishing one, and reading every region's by binding '#'.
        var forged = new AdmissionLimitChanged(deployment, "someone", "gpt-4o", region, AdmissionState.Open, 1_000_000_000_000, 1_000_000_000_000, 0, 0, false, 4, 1,
            9_007_199_254_740_991, DateTimeOffset.UtcNow);
        await AssertRefusedAsync(connection, c => c.BasicPublishAsync(AdmissionTopology.Exchange, AdmissionTopology.RoutingKey(region, "gpt-4o", deployment), false,
            new BasicProperties(), JsonSerializer.SerializeToUtf8Bytes(forged, PlatformFixture.Json)).AsTask());
        await AssertRefusedAsync(connection, async c =>
        {
            var own = await c.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true);
            await c.QueueBindAsync(own.QueueName, AdmissionTopology.Exchange, "#");
        });
        // What it may do: follow its own region's limits.
        await using (var allowed = await connection.CreateChannelAsync())
        {
            var own = await allowed.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true);
            await allowed.QueueBindAsync(own.QueueName, AdmissionTopology.Exchange, $"{region}.#");
        }

        await using var platformSide = await new ConnectionFactory { Uri = platform.Settings.RabbitUri }.CreateConnectionAsync();
        await using var probe = await platformSide.CreateChannelAsync();
        await probe.QueueDeclarePassiveAsync(partition); // still there
        var after = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals");
        Assert.Equal(before.GetRawText(), after.GetRawText());
        var limit = await (await platform.Operator().PostAsJsonAsync("/v1/admission/query", new { deploymentIds = new[] { deployment } })).Content.ReadFromJsonAsync<JsonElement[]>();
        Assert.NotEqual(forged.Version, limit![0].GetProperty("version").GetInt64());
    }

    [Fact]
    public async Task A_node_cannot_bill_a_deployment_outside_its_scope_and_its_user_id_cannot_be_another_nodes()
    {
        var (victim, deployment, _) = await VictimAsync();
        var elsewhere = await platform.NewPoolAsync("gpt-4o", 10);
        var attacker = await platform.NewServingNodeAsync(elsewhere);
        var now = DateTimeOffset.UtcNow;

        // (a) usage onto another tenant's deployment in a region the node does not serve.
        await platform.PublishAsync(new MeteringBatch(1, attacker, 1, now, [Record("onto-victim", deployment, prompt: 5_000_000)]));
        await Eventually.Until(
            () => platform.Operator().GetFromJsonAsync<JsonElement[]>($"/v1/operator/quarantine?reason=NotServedByProducer&producerId={attacker}"),
            q => q!.Length == 1);
        var totals = await victim.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals");
        Assert.Equal(0, totals.GetProperty("records").GetInt64());
        // The AMQP user id names the connection's user or the broker refuses the message.
        var victimNode = await platform.NewServingNodeAsync();
        var forged = await Xunit.Record.ExceptionAsync(() => platform.PublishRawAsNodeAsync(attacker, deployment,
            JsonSerializer.SerializeToUtf8Bytes(new MeteringBatch(1, victimNode, 1, now, [Record("as-victim-node", deployment)]), PlatformFixture.Json), platform.BrokerUserOf(victimNode)));
        Assert.NotNull(forged);
    }

    [Fact]
    public async Task Revoking_a_node_closes_its_connections_within_five_seconds_refuses_new_ones_and_quarantines_what_it_sent()
    {
        var (customer, deployment, region) = await VictimAsync();
        var node = await platform.NewServingNodeAsync(region);
        var connection = await platform.ConnectAsNodeAsync(node);
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.ConnectionShutdownAsync += (_, _) =>
        {
            closed.TrySetResult();
            return Task.CompletedTask;
        };

        var clock = Stopwatch.StartNew();
        (await platform.Operator().DeleteAsync($"/v1/operator/serving-nodes/{node}")).EnsureSuccessStatusCode();
        await closed.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"closed after {clock.Elapsed}");
        await Assert.ThrowsAnyAsync<Exception>(() => platform.ConnectAsNodeAsync(node));

        // A batch in its name that was still on its way (here: sent over the platform's connection) is refused as revoked.
        await platform.PublishRawAsync(deployment, JsonSerializer.SerializeToUtf8Bytes(new MeteringBatch(1, node, 1, DateTimeOffset.UtcNow, [Record("after-revocation", deployment)]), PlatformFixture.Json));
        await Eventually.Until(
            () => platform.Operator().GetFromJsonAsync<JsonElement[]>($"/v1/operator/quarantine?reason=RevokedProducer&producerId={node}"),
            q => q!.Length == 1);
        Assert.Equal(0, (await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals")).GetProperty("records").GetInt64());
        var listed = await platform.Operator().GetFromJsonAsync<JsonElement[]>("/v1/operator/serving-nodes");
        Assert.Contains(listed!, n => n.GetProperty("producerId").GetString() == node && n.GetProperty("revoked").GetBoolean() && !n.GetProperty("hasCredentials").GetBoolean());
        Assert.Equal(System.Net.HttpStatusCode.Conflict, (await platform.Operator().PostAsync($"/v1/operator/serving-nodes/{node}/credentials", null)).StatusCode);
        await connection.DisposeAsync();
    }

    [Fact]
    public async Task Registering_shows_no_secret_and_a_rotated_password_replaces_the_old_one()
    {
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var node = await platform.NewServingNodeAsync(region);
        var old = platform.BrokerOf(node);
        var rotated = await (await platform.Operator().PostAsync($"/v1/operator/serving-nodes/{node}/credentials", null)).EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>();
        var listed = await platform.Operator().GetStringAsync("/v1/operator/serving-nodes");
        Assert.DoesNotContain(rotated.GetProperty("brokerPassword").GetString()!, listed, StringComparison.Ordinal);
        Assert.DoesNotContain("passwordHash", listed, StringComparison.OrdinalIgnoreCase);

        await Assert.ThrowsAnyAsync<Exception>(() => new ConnectionFactory { Uri = old, AutomaticRecoveryEnabled = false }.CreateConnectionAsync());
        await using var fresh = await new ConnectionFactory { Uri = platform.NodeUri(rotated.GetProperty("brokerUser").GetString()!, rotated.GetProperty("brokerPassword").GetString()!) }
            .CreateConnectionAsync();
        Assert.True(fresh.IsOpen);
    }

    [Fact]
    public async Task When_the_brokers_management_api_does_not_answer_a_node_change_is_recorded_and_answered_503_with_retry_after()
    {
        var exchange = $"tests.nobroker.{Guid.NewGuid():N}"[..26];
        await using var host = new PlatformProcess(exchange, partitions: 1, roles: "Api",
            environment: new Dictionary<string, string> { ["THROUGHPUT_RABBIT_MANAGEMENT"] = "http://127.0.0.1:9" });
        await host.StartAsync();
        using var op = new HttpClient { BaseAddress = host.Address };
        op.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", PlatformFixture.OperatorKey);
        var producer = await platform.NewServingNodeAsync("eastus");

        using var rotated = await op.PostAsync($"/v1/operator/serving-nodes/{producer}/credentials", null);
        using var revoked = await op.DeleteAsync($"/v1/operator/serving-nodes/{producer}");
        foreach (var answer in new[] { rotated, revoked })
        {
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, answer.StatusCode);
            Assert.Equal("application/problem+json", answer.Content.Headers.ContentType!.MediaType);
            Assert.NotNull(answer.Headers.RetryAfter);
        }

        // Recorded all the same (its metering is refused from now on); the retry where the broker answers completes it.
        var listed = await platform.Operator().GetFromJsonAsync<JsonElement[]>("/v1/operator/serving-nodes");
        Assert.Contains(listed!, n => n.GetProperty("producerId").GetString() == producer && n.GetProperty("revoked").GetBoolean());
        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await platform.Operator().DeleteAsync($"/v1/operator/serving-nodes/{producer}")).StatusCode);
        await Assert.ThrowsAnyAsync<Exception>(() => platform.ConnectAsNodeAsync(producer));
    }

    Task<JsonElement[]?> QuarantinedAsync(string producer, string reason, int count) => Eventually.Until(
        () => platform.Operator().GetFromJsonAsync<JsonElement[]>($"/v1/operator/quarantine?reason={reason}&producerId={producer}&limit=1000"), q => q!.Length >= count);

    static MeteringRecord At(string id, string deploymentId, DateTimeOffset finishedAt, bool spilled = false) =>
        new(id, deploymentId, "r-" + id, 1000, 0, 10, spilled, 0, finishedAt.AddSeconds(-1), finishedAt);

    [Fact]
    public async Task Records_outside_the_backdating_window_or_in_the_wrong_envelope_are_quarantined_with_their_reason_and_not_billed()
    {
        var (customer, deployment, region) = await VictimAsync();
        var node = await platform.NewServingNodeAsync(region);
        var now = DateTimeOffset.UtcNow;
        byte[] Body(long sequence, params MeteringRecord[] records) => JsonSerializer.SerializeToUtf8Bytes(new MeteringBatch(1, node, sequence, now, records), PlatformFixture.Json);

        await platform.PublishRawAsNodeAsync(node, deployment, Body(1, At("in-1971", deployment, new DateTimeOffset(1971, 3, 1, 0, 0, 0, TimeSpan.Zero)),
            At("36-days-old", deployment, now.AddDays(-36)), At("34-days-old", deployment, now.AddDays(-34))));
        await platform.PublishRawAsNodeAsync(node, deployment, Body(2, At("as-text", deployment, now)), contentType: "text/plain");
        await platform.PublishRawAsNodeAsync(node, deployment, Body(3, At("no-version", deployment, now)), versionHeader: false);

        var tooOld = await QuarantinedAsync(node, "TimestampTooOld", 2);
        Assert.Equal(["36-days-old", "in-1971"], tooOld!.Select(q => q.GetProperty("recordId").GetString()).Order());
        Assert.Contains("text/plain", Assert.Single((await QuarantinedAsync(node, "WrongContentType", 1))!).GetProperty("detail").GetString());
        Assert.Equal(3, Assert.Single((await QuarantinedAsync(node, "MissingVersionHeader", 1))!).GetProperty("sequence").GetInt64());
        var totals = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals"), t => t.GetProperty("records").GetInt64() >= 1);
        Assert.Equal(1, totals.GetProperty("records").GetInt64()); // the 34-day-old record only
    }

    [Fact]
    public async Task A_node_reads_what_was_refused_under_its_own_producer_id_and_nothing_of_another_nodes()
    {
        var (customer, deployment, region) = await VictimAsync();
        var (node, other) = (await platform.NewServingNodeAsync(region), await platform.NewServingNodeAsync(region));
        var now = DateTimeOffset.UtcNow;
        await platform.PublishRawAsNodeAsync(node, deployment, JsonSerializer.SerializeToUtf8Bytes(
            new MeteringBatch(1, node, 1, now, [At("stale", deployment, now.AddDays(-40)), At("fresh", deployment, now)]), PlatformFixture.Json));
        await platform.PublishRawAsNodeAsync(other, deployment, JsonSerializer.SerializeToUtf8Bytes(
            new MeteringBatch(1, other, 1, now, [At("other-stale", deployment, now.AddDays(-40))]), PlatformFixture.Json));
        await QuarantinedAsync(other, "TimestampTooOld", 1);

        var own = platform.Client(await NodeKeyAsync(node));
        var refused = await Eventually.Until(() => own.GetFromJsonAsync<JsonElement[]>("/v1/metering/refused"), r => r!.Length >= 1);
        var entry = Assert.Single(refused!);
        Assert.Equal("TimestampTooOld", entry.GetProperty("reason").GetString());
        Assert.Equal("stale", entry.GetProperty("recordId").GetString());
        Assert.Empty((await own.GetFromJsonAsync<JsonElement[]>("/v1/metering/refused?reason=ConflictingReplay"))!);
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await customer.GetAsync("/v1/metering/refused")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await platform.Operator().GetAsync("/v1/metering/refused")).StatusCode); // operators read the quarantine
    }

    async Task<string> NodeKeyAsync(string producerId)
    {
        var issued = await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "ServingNode", name = producerId });
        return (await issued.EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString()!;
    }

    [Fact]
    public async Task A_replay_of_a_used_sequence_with_other_records_is_quarantined_as_conflicting_and_a_verbatim_one_is_ignored()
    {
        var (customer, deployment, region) = await VictimAsync();
        var node = await platform.NewServingNodeAsync(region);
        var now = DateTimeOffset.UtcNow;
        var original = new MeteringBatch(1, node, 7, now, [At("a", deployment, now)]);

        await platform.PublishAsync(original);
        await platform.PublishAsync(original);
        await platform.PublishAsync(original with { Records = [At("a", deployment, now) with { PromptTokens = 999_999 }] });

        var conflict = Assert.Single((await QuarantinedAsync(node, "ConflictingReplay", 1))!);
        Assert.Equal(7, conflict.GetProperty("sequence").GetInt64());
        Assert.Equal(deployment, conflict.GetProperty("deploymentId").GetString());
        var totals = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals");
        Assert.Equal(1, totals.GetProperty("records").GetInt64());
        Assert.Equal(1000, totals.GetProperty("promptTokens").GetInt64());
        var all = await platform.Operator().GetFromJsonAsync<JsonElement[]>($"/v1/operator/quarantine?producerId={node}&limit=1000");
        Assert.Single(all!); // the verbatim duplicate left no trace
    }

    [Fact]
    public async Task Spilled_records_without_spillover_are_quarantined_and_usage_that_finished_before_a_release_is_billed_after_it()
    {
        var (customer, deployment, region) = await VictimAsync();
        var node = await platform.NewServingNodeAsync(region);
        var before = DateTimeOffset.UtcNow.AddSeconds(-5);

        await platform.PublishAsync(new MeteringBatch(1, node, 1, before, [At("spilled-without-spillover", deployment, before, spilled: true)]));
        Assert.Single((await QuarantinedAsync(node, "SpilloverOff", 1))!);

        var release = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{deployment}/release");
        release.Headers.IfMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue("\"1\""));
        (await customer.SendAsync(release)).EnsureSuccessStatusCode();
        var after = DateTimeOffset.UtcNow.AddSeconds(1);
        await platform.PublishAsync(new MeteringBatch(1, node, 2, after, [At("served-before-release", deployment, before), At("after-release", deployment, after)]));

        Assert.Equal("after-release", Assert.Single((await QuarantinedAsync(node, "ReleasedDeployment", 1))!).GetProperty("recordId").GetString());
        var totals = await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals"), t => t.GetProperty("records").GetInt64() >= 1);
        Assert.Equal(1, totals.GetProperty("records").GetInt64());
    }

    /// <summary>A consumer that does nothing: the attempt to register it is what is refused.</summary>
    sealed class AsyncEventingBasicConsumerStub(IChannel channel) : AsyncDefaultBasicConsumer(channel);
}
