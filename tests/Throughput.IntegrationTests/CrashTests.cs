using System.Net.Http.Json;
using System.Text.Json;
using RabbitMQ.Client;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests;

/// <summary>The metering consumer as a real process: killed with SIGKILL mid-stream and restarted, and cut off from its database.</summary>
[Collection(PlatformCollection.Name)]
public sealed class CrashTests(PlatformFixture platform)
{
    [Fact]
    public async Task Killing_the_consumer_process_mid_stream_loses_nothing_and_counts_nothing_twice()
    {
        var (customer, producer, deployments) = await MeteredDeploymentsAsync(3);
        var exchange = $"tests.kill.{Guid.NewGuid():N}"[..24];
        // A metering-only host: the role that owns the partitions, as it would run at scale.
        await using var host = new PlatformProcess(exchange, partitions: 2, roles: "Metering");
        await host.StartAsync();

        const int perDeployment = 6000;
        await using var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(platform.BrokerOf(producer), producer)
        {
            Exchange = exchange,
            MaxBatchRecords = 100,
            MaxLinger = TimeSpan.FromMilliseconds(5),
        });
        var publishing = Task.Run(async () =>
        {
            for (var i = 0; i < perDeployment; i++)
            {
                foreach (var d in deployments)
                {
                    var now = DateTimeOffset.UtcNow;
                    await publisher.RecordAsync(new MeteringRecord($"{d}-{i}", d, $"q{i}", 100 + i % 7, i % 3, 10 + i % 5, false, 0, now.AddMilliseconds(-50), now));
                }
                if (i % 20 == 0) await Task.Delay(20); // a steady stream of about 3,000 records/s rather than one burst
            }
            await publisher.FlushAsync();
        });

        var expected = (long)perDeployment * deployments.Length;
        var kills = 0;
        foreach (var share in new[] { 0.2, 0.5 })
        {
            // Kill while batches are in flight: some consumed and committed, some delivered and not yet acked.
            await Eventually.Until(() => Counted(customer, deployments), n => n >= expected * share, TimeSpan.FromSeconds(60));
            if (publishing.IsCompleted) break;
            host.Kill();
            kills++;
            await Task.Delay(500);
            await host.StartAsync();
        }
        await publishing;
        Assert.True(kills >= 1, "the publisher finished before the consumer could be killed mid-stream");
        await Eventually.Until(() => Counted(customer, deployments), n => n >= expected, TimeSpan.FromSeconds(90));
        await Task.Delay(2000); // anything redelivered late would show up as an over-count now
        Assert.Equal(expected, await Counted(customer, deployments));
        var expectedPrompt = Enumerable.Range(0, perDeployment).Sum(i => 100L + i % 7);
        foreach (var d in deployments)
        {
            var totals = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{d}/usage/totals");
            Assert.Equal(perDeployment, totals.GetProperty("records").GetInt64());
            Assert.Equal(expectedPrompt, totals.GetProperty("promptTokens").GetInt64());
        }

        await using var rabbit = await new ConnectionFactory { Uri = platform.Settings.RabbitUri }.CreateConnectionAsync();
        await Tests.DeleteMeteringTopologyAsync(rabbit, exchange, partitions: 2);
    }

    [Fact]
    public async Task A_database_outage_longer_than_the_consumers_retries_is_waited_out_and_every_record_billed_once()
    {
        var (customer, producer, deployments) = await MeteredDeploymentsAsync(2);
        var exchange = $"tests.outage.{Guid.NewGuid():N}"[..26];
        await using var database = DatabaseLink.To(platform.Settings.PgPort);
        await using var host = new PlatformProcess(exchange, partitions: 2, roles: "Metering",
            environment: new Dictionary<string, string> { ["THROUGHPUT_PG_PORT"] = database.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await host.StartAsync();
        await using var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(platform.BrokerOf(producer), producer)
        {
            Exchange = exchange,
            MaxBatchRecords = 50,
            MaxLinger = TimeSpan.FromMilliseconds(5),
        });
        async Task PublishAsync(int from, int to)
        {
            for (var i = from; i < to; i++)
            {
                foreach (var d in deployments)
                {
                    var now = DateTimeOffset.UtcNow;
                    await publisher.RecordAsync(new MeteringRecord($"{d}-{i}", d, $"q{i}", 100 + i % 7, 0, 10, false, 0, now.AddMilliseconds(-50), now));
                }
                if (i % 20 == 0) await Task.Delay(20);
            }
            await publisher.FlushAsync();
        }

        await PublishAsync(0, 500);
        await Eventually.Until(() => Counted(customer, deployments), n => n == 500L * deployments.Length, TimeSpan.FromSeconds(60));
        database.Cut();
        await PublishAsync(500, 1500); // the broker confirms them; the host cannot commit
        // Longer than the ten retries (about 30 s) after which a batch used to go to the _error queue, unbilled.
        await Task.Delay(TimeSpan.FromSeconds(40));
        database.Restore();

        var expected = 1500L * deployments.Length;
        await Eventually.Until(() => Counted(customer, deployments), n => n >= expected, TimeSpan.FromSeconds(90));
        await Task.Delay(2000); // anything redelivered late would show up as an over-count now
        Assert.Equal(expected, await Counted(customer, deployments));
        await using var rabbit = await new ConnectionFactory { Uri = platform.Settings.RabbitUri }.CreateConnectionAsync();
        foreach (var p in new[] { 0, 1 }) Assert.Equal(0u, await Tests.MessagesInAsync(rabbit, $"{exchange}.p{p}_error"));
        await Tests.DeleteMeteringTopologyAsync(rabbit, exchange, partitions: 2);
    }

    [Fact]
    public async Task While_the_database_is_unreachable_the_API_answers_503_with_Retry_After_and_then_recovers()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o-mini", 1000);
        var deployment = await PlatformFixture.BuyAsync(customer, region, 10, "gpt-4o-mini");
        await using var database = DatabaseLink.To(platform.Settings.PgPort);
        await using var host = new PlatformProcess($"tests.api503.{Guid.NewGuid():N}"[..26], partitions: 1, roles: "Api",
            environment: new Dictionary<string, string> { ["THROUGHPUT_PG_PORT"] = database.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await host.StartAsync();
        using var api = host.ClientAs(customer);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await api.GetAsync($"/v1/deployments/{deployment}")).StatusCode);

        database.Cut();
        foreach (var path in new[] { $"/v1/deployments/{deployment}", $"/v1/deployments/{deployment}/usage/totals" })
        {
            using var unavailable = await api.GetAsync(path);
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, unavailable.StatusCode);
            Assert.Equal("application/problem+json", unavailable.Content.Headers.ContentType?.MediaType);
            Assert.Equal(TimeSpan.FromSeconds(5), unavailable.Headers.RetryAfter?.Delta);
        }

        database.Restore();
        await Eventually.Until(async () => (await api.GetAsync($"/v1/deployments/{deployment}")).StatusCode, s => s == System.Net.HttpStatusCode.OK, TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_backlogged_partition_writes_its_meters_once_an_interval_and_a_kill_between_two_writes_loses_nothing()
    {
        var (customer, producer, deployments) = await MeteredDeploymentsAsync(3);
        var exchange = $"tests.kill.{Guid.NewGuid():N}"[..24]; // an exchange serving nodes may publish to (HostFixture)
        async Task PublishAsync(MeteringPublisher publisher, int from, int to)
        {
            for (var i = from; i < to; i++)
                foreach (var d in deployments)
                {
                    var now = DateTimeOffset.UtcNow;
                    await publisher.RecordAsync(new MeteringRecord($"{d}-{i}", d, $"q{i}", 100 + i, 0, 10, false, 0, now.AddMilliseconds(-50), now));
                }
            await publisher.FlushAsync();
        }

        // Every batch counts as backlogged and neither the interval nor idleness comes within the test: after its first batch
        // the host writes no meter, and the log runs ahead of the meters until the kill.
        await using var lazy = new PlatformProcess(exchange, partitions: 2, roles: "Metering",
            environment: new Dictionary<string, string>
            {
                // One message a batch: the partition's first batch, which always writes, cannot take the whole run.
                ["Metering__BatchMessageLimit"] = "1",
                ["Metering__BacklogAfter"] = "00:00:00", ["Metering__MeterCheckpointInterval"] = "01:00:00", ["Metering__MeterIdleWrite"] = "01:00:00",
            });
        await lazy.StartAsync(); // declares the exchange, which a node may publish to but not create
        await using var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(platform.BrokerOf(producer), producer)
        {
            Exchange = exchange,
            MaxBatchRecords = 20,
            MaxLinger = TimeSpan.FromMilliseconds(5),
        });
        await PublishAsync(publisher, 0, 200);
        await Eventually.Until(() => LoggedRecordsAsync(exchange), n => n == 600, TimeSpan.FromSeconds(60));
        Assert.True(await Counted(customer, deployments) < 600, "the meters were written with every batch: the backlogged path was not taken");
        lazy.Kill();

        // The next host folds what the log holds after the checkpoint onto the stored meters, then meters on.
        await using var restarted = new PlatformProcess(exchange, partitions: 2, roles: "Metering");
        await restarted.StartAsync();
        await PublishAsync(publisher, 200, 201);
        await Eventually.Until(() => Counted(customer, deployments), n => n >= 603, TimeSpan.FromSeconds(60));
        await Task.Delay(1500);
        foreach (var d in deployments)
        {
            var totals = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{d}/usage/totals");
            Assert.Equal(201, totals.GetProperty("records").GetInt64());
            Assert.Equal(Enumerable.Range(0, 201).Sum(i => 100L + i), totals.GetProperty("promptTokens").GetInt64());
        }

        await using var rabbit = await new ConnectionFactory { Uri = platform.Settings.RabbitUri }.CreateConnectionAsync();
        await Tests.DeleteMeteringTopologyAsync(rabbit, exchange, partitions: 2);
    }

    [Fact]
    public async Task A_backlogged_partition_whose_traffic_stops_has_its_meters_written_once_it_falls_idle()
    {
        var (customer, producer, deployments) = await MeteredDeploymentsAsync(2);
        var exchange = $"tests.kill.{Guid.NewGuid():N}"[..24];
        await using var host = new PlatformProcess(exchange, partitions: 2, roles: "Metering",
            environment: new Dictionary<string, string>
            {
                ["Metering__BatchMessageLimit"] = "1", ["Metering__BacklogAfter"] = "00:00:00", ["Metering__MeterCheckpointInterval"] = "01:00:00",
            });
        await host.StartAsync();
        await using var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(platform.BrokerOf(producer), producer)
        {
            Exchange = exchange,
            MaxBatchRecords = 10,
            MaxLinger = TimeSpan.FromMilliseconds(5),
        });
        for (var i = 0; i < 100; i++)
            foreach (var d in deployments)
            {
                var now = DateTimeOffset.UtcNow;
                await publisher.RecordAsync(new MeteringRecord($"{d}-{i}", d, $"q{i}", 100, 0, 10, false, 0, now.AddMilliseconds(-50), now));
            }
        await publisher.FlushAsync();

        await Eventually.Until(() => LoggedRecordsAsync(exchange), n => n == 200, TimeSpan.FromSeconds(60));
        // No batch follows the last one: only the host's checkpointer can bring the meters up to the log.
        await Eventually.Until(() => Counted(customer, deployments), n => n == 200, TimeSpan.FromSeconds(30));

        await using var rabbit = await new ConnectionFactory { Uri = platform.Settings.RabbitUri }.CreateConnectionAsync();
        await Tests.DeleteMeteringTopologyAsync(rabbit, exchange, partitions: 2);
    }

    /// <summary>Records in the usage events of the partitions behind <paramref name="exchange"/>: what the log holds, whatever the meters say.</summary>
    async Task<long> LoggedRecordsAsync(string exchange)
    {
        await using var database = Npgsql.NpgsqlDataSource.Create(platform.Settings.PostgresConnectionString());
        await using var command = database.CreateCommand($"""
            select coalesce(sum(r::bigint), 0)::bigint from {PlatformFixture.Schema}.mt_events e, jsonb_array_elements_text({Throughput.Deployments.UsageBatchMeteredBytes.BodySql("e")}->'records') r
            where e.type = 'usage_batch_metered' and e.stream_id like @streams
            """);
        command.Parameters.AddWithValue("streams", $"meter:{exchange}.p%");
        return (long)(await command.ExecuteScalarAsync())!;
    }

    async Task<(HttpClient Customer, string Producer, string[] Deployments)> MeteredDeploymentsAsync(int count)
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o-mini", 1000);
        var producer = await platform.NewServingNodeAsync(region);
        var deployments = new string[count];
        for (var i = 0; i < count; i++) deployments[i] = await PlatformFixture.BuyAsync(customer, region, 100, "gpt-4o-mini");
        return (customer, producer, deployments);
    }

    static async Task<long> Counted(HttpClient customer, IEnumerable<string> deployments)
    {
        long sum = 0;
        foreach (var d in deployments)
            sum += (await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{d}/usage/totals")).GetProperty("records").GetInt64();
        return sum;
    }
}
