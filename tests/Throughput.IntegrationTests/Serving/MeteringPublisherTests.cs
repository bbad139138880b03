using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Throughput.Configuration;
using Throughput.Contracts;
using Throughput.Serving;
using Xunit.Abstractions;

namespace Throughput.IntegrationTests.Serving;

/// <summary>
/// A serving node publishes through the SDK to the real RabbitMQ. Each test has its own consistent-hash exchange
/// and queue (never the platform's), reads back what arrived, and checks it as a deduplicating consumer would.
/// </summary>
public sealed class MeteringPublisherTests(ITestOutputHelper output)
{
    const int MaxBatchRecords = 500;
    static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);
    static readonly string[] Deployments = Enumerable.Range(1, 7).Select(n => $"dep-{n}").ToArray();

    [Fact]
    public async Task Twenty_thousand_records_over_seven_deployments_arrive_once_in_batches_of_one_lane_in_sequence_order()
    {
        await using var tap = await MeteringTap.StartAsync();
        var options = Options(tap);
        var latencies = new ConcurrentQueue<TimeSpan>();
        var records = Records(20_000, seed: 1);

        await using (var publisher = await MeteringPublisher.CreateAsync(options with { ConfirmLatency = latencies.Enqueue }))
        {
            foreach (var record in records) await publisher.RecordAsync(record);
            await publisher.FlushAsync();

            Assert.Equal(records.Length, publisher.RecordsConfirmed);
            Assert.Equal(0, publisher.RecordsBuffered);
            Assert.Equal(0, publisher.Republishes);
            Assert.Equal(publisher.BatchesPublished, latencies.Count);
        }
        var batches = await tap.UntilAllArriveAsync(records);

        Assert.Equal(records.Select(r => r.RecordId).Order(), batches.SelectMany(b => b.Batch.Records).Select(r => r.RecordId).Order());
        AssertWellFormed(batches, options.ProducerId);
        AssertInSequenceOrderPerLane(batches);
        var sequences = batches.Select(b => b.Batch.Sequence).Order().ToArray();
        Assert.Equal(sequences.Length, sequences.Distinct().Count());
        Assert.Equal(options.InitialSequence, sequences[0]);
        Assert.Equal(sequences[0] + sequences.Length - 1, sequences[^1]);
    }

    [Fact]
    public async Task Records_published_while_the_broker_drops_the_connection_are_counted_exactly_once_by_sequence_dedupe()
    {
        await using var tap = await MeteringTap.StartAsync();
        // No linger: each deployment publishes its next batch as soon as the previous is confirmed, so batches are
        // almost always in flight when the broker drops the connection.
        var options = Options(tap) with
        {
            MaxLinger = TimeSpan.Zero, RetryDelay = TimeSpan.FromMilliseconds(50), MaxRetryDelay = TimeSpan.FromMilliseconds(500),
        };
        var records = Records(20_000, seed: 2);

        await using (var publisher = await MeteringPublisher.CreateAsync(options))
        {
            var connection = await Broker.FindConnectionAsync(options.ConnectionName!);
            var recording = Task.Run(async () =>
            {
                using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(1)); // a steady ~10,000 records a second
                foreach (var chunk in records.Chunk(10))
                {
                    foreach (var record in chunk) await publisher.RecordAsync(record);
                    await pace.WaitForNextTickAsync();
                }
            });
            await Eventually.Until(() => Task.FromResult(publisher.RecordsConfirmed), confirmed => confirmed >= 2_000);
            await Broker.CloseConnectionAsync(connection);
            Assert.False(recording.IsCompleted, "the connection closed after recording ended: the test proves less than it says");
            await recording;
            await publisher.FlushAsync().WaitAsync(TimeSpan.FromSeconds(60));

            output.WriteLine($"batches {publisher.BatchesPublished}, republishes {publisher.Republishes}, reconnects {publisher.Reconnects}");
            Assert.True(publisher.Reconnects >= 1, "the SDK did not reconnect");
            Assert.Equal(records.Length, publisher.RecordsConfirmed);
        }
        var batches = await tap.UntilAllArriveAsync(records);
        output.WriteLine($"deliveries {batches.Count}, distinct sequences {batches.Select(b => b.Batch.Sequence).Distinct().Count()}");

        AssertWellFormed(batches, options.ProducerId);
        AssertInSequenceOrderPerLane(batches);
        foreach (var repeats in batches.GroupBy(b => b.Batch.Sequence).Where(g => g.Count() > 1))
        {
            var first = repeats.First();
            Assert.All(repeats, repeat => Assert.Equal(first.Body, repeat.Body)); // a republish is the same batch, byte for byte
        }
        var distinct = batches.Select(b => b.Batch.Sequence).Distinct().Order().ToArray();
        Assert.Equal(Enumerable.Range(0, distinct.Length).Select(i => distinct[0] + i), distinct); // no gaps

        var counted = CountAsHighWaterMarkConsumer(batches);
        Assert.Equal(records.Select(r => r.RecordId).Order(), counted.Order());
    }

    [Fact]
    public async Task A_batch_the_broker_refuses_is_republished_with_its_sequence_before_the_deployments_next_batch()
    {
        // A queue that holds one message and nacks the rest until someone consumes.
        await using var tap = await MeteringTap.StartAsync(new() { ["x-max-length"] = 1, ["x-overflow"] = "reject-publish" }, consume: false);
        var options = Options(tap) with { MaxBatchRecords = 10, RetryDelay = TimeSpan.FromMilliseconds(20), MaxRetryDelay = TimeSpan.FromMilliseconds(100) };
        var records = Records(40, seed: 3).Select(r => r with { DeploymentId = Deployments[0] }).ToArray();

        await using (var publisher = await MeteringPublisher.CreateAsync(options))
        {
            foreach (var record in records) await publisher.RecordAsync(record);
            var flushed = publisher.FlushAsync();
            await Eventually.Until(() => Task.FromResult(publisher.Republishes), republishes => republishes >= 3);
            Assert.False(flushed.IsCompleted);
            Assert.Equal(1, publisher.BatchesPublished);

            await tap.ConsumeAsync();
            await flushed.WaitAsync(TimeSpan.FromSeconds(30));
        }
        var batches = await tap.UntilAllArriveAsync(records);

        Assert.Equal(Enumerable.Range(0, 4).Select(i => options.InitialSequence + i), batches.Select(b => b.Batch.Sequence));
        Assert.Equal(records.Select(r => r.RecordId), batches.SelectMany(b => b.Batch.Records).Select(r => r.RecordId));
    }

    [Fact]
    public async Task A_publisher_given_every_node_of_a_cluster_connects_and_reconnects_past_a_dead_node()
    {
        await using var tap = await MeteringTap.StartAsync();
        // The URI names the dead node too: only the node list gets the publisher to the broker that answers.
        var dead = new AmqpTcpEndpoint("127.0.0.1", ClosedPort());
        var live = PlatformBroker();
        var options = Options(tap) with
        {
            Broker = (live with { Host = dead.HostName, Port = dead.Port }).Uri,
            BrokerNodes = [dead, .. live.Endpoints],
            RetryDelay = TimeSpan.FromMilliseconds(50),
            MaxRetryDelay = TimeSpan.FromMilliseconds(500),
        };
        var records = Records(2_000, seed: 4);

        await using (var publisher = await MeteringPublisher.CreateAsync(options))
        {
            foreach (var record in records[..1_000]) await publisher.RecordAsync(record);
            await publisher.FlushAsync();
            await Broker.CloseConnectionAsync(await Broker.FindConnectionAsync(options.ConnectionName!));
            foreach (var record in records[1_000..]) await publisher.RecordAsync(record);
            await publisher.FlushAsync().WaitAsync(TimeSpan.FromSeconds(60));

            Assert.True(publisher.Reconnects >= 1, "the SDK did not reconnect");
            Assert.Equal(records.Length, publisher.RecordsConfirmed);
        }
        var batches = await tap.UntilAllArriveAsync(records);

        Assert.Equal(records.Select(r => r.RecordId).Order(), batches.SelectMany(b => b.Batch.Records).Select(r => r.RecordId).Distinct().Order());
    }

    static int ClosedPort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    static MeteringPublisherOptions Options(MeteringTap tap)
    {
        var producer = "sdk-test-" + Guid.NewGuid().ToString("N")[..12];
        return new MeteringPublisherOptions(PlatformBroker().Uri, producer)
        {
            Exchange = tap.Exchange,
            MaxBatchRecords = MaxBatchRecords,
            ConnectionName = producer, // unique, so the broker-loss test closes this connection and no other
            DisposeTimeout = TimeSpan.FromSeconds(30),
        };
    }

    static MeteringRecord[] Records(int count, int seed)
    {
        var random = new Random(seed);
        var run = Guid.NewGuid().ToString("N")[..8];
        var now = DateTimeOffset.UtcNow;
        return Enumerable.Range(0, count)
            .Select(i => new MeteringRecord($"{run}-{i}", Deployments[random.Next(Deployments.Length)], $"req-{i}",
                random.Next(10, 8_000), 0, random.Next(1, 2_000), i % 50 == 0, 0, now.AddSeconds(-2), now))
            .ToArray();
    }

    static void AssertWellFormed(IReadOnlyList<Arrived> batches, string producerId)
    {
        Assert.All(batches, arrived =>
        {
            var batch = arrived.Batch;
            Assert.Equal(MeteringTopology.CurrentVersion, batch.Version);
            Assert.Equal(producerId, batch.ProducerId);
            Assert.InRange(batch.Records.Count, 1, MaxBatchRecords);
            Assert.All(batch.Records, r => Assert.Equal(arrived.RoutingKey, MeteringTopology.LaneKey(MeteringTopology.LaneOf(r.DeploymentId))));
            Assert.Equal($"{producerId}:{batch.Sequence}", arrived.MessageId);
            Assert.Equal(MeteringTopology.ContentType, arrived.ContentType);
            Assert.True(arrived.Persistent);
            Assert.Equal(MeteringTopology.CurrentVersion, arrived.VersionHeader);
        });
    }

    /// <summary>Per lane, sequences only grow in arrival order; a republish may repeat the latest one.</summary>
    static void AssertInSequenceOrderPerLane(IReadOnlyList<Arrived> batches)
    {
        foreach (var lane in batches.GroupBy(b => b.RoutingKey))
        {
            var sequences = lane.Select(b => b.Batch.Sequence).ToArray();
            for (var i = 1; i < sequences.Length; i++)
                Assert.True(sequences[i] >= sequences[i - 1], $"{lane.Key}: sequence {sequences[i]} arrived after {sequences[i - 1]}");
        }
    }

    /// <summary>A stand-in for the platform's dedupe: per lane, apply a batch only when its sequence is above the highest applied (batches of a lane arrive in order).</summary>
    static List<string> CountAsHighWaterMarkConsumer(IReadOnlyList<Arrived> batches)
    {
        var highWaterMark = new Dictionary<string, long>();
        var counted = new List<string>();
        foreach (var arrived in batches)
        {
            if (highWaterMark.TryGetValue(arrived.RoutingKey, out var applied) && arrived.Batch.Sequence <= applied) continue;
            highWaterMark[arrived.RoutingKey] = arrived.Batch.Sequence;
            counted.AddRange(arrived.Batch.Records.Select(r => r.RecordId));
        }
        return counted;
    }

    sealed record Arrived(string RoutingKey, string? MessageId, string? ContentType, bool Persistent, int? VersionHeader, byte[] Body, MeteringBatch Batch);

    /// <summary>A consistent-hash exchange of the test's own with one queue that takes every deployment, and what arrives on it.</summary>
    sealed class MeteringTap : IAsyncDisposable
    {
        readonly IConnection _connection;
        readonly IChannel _channel;
        readonly ConcurrentQueue<Arrived> _arrived = new();

        MeteringTap(string exchange, string queue, IConnection connection, IChannel channel) =>
            (Exchange, _queue, _connection, _channel) = (exchange, queue, connection, channel);

        readonly string _queue;

        public string Exchange { get; }

        /// <summary>Declares the exchange and its queue (with optional queue arguments); consumes at once unless told not to.</summary>
        public static async Task<MeteringTap> StartAsync(Dictionary<string, object?>? queueArguments = null, bool consume = true)
        {
            var exchange = "sdk-test-" + Guid.NewGuid().ToString("N");
            var connection = await new ConnectionFactory { Uri = PlatformBroker().Uri }.CreateConnectionAsync(exchange + "-tap");
            var channel = await connection.CreateChannelAsync();
            await channel.ExchangeDeclareAsync(exchange, MeteringTopology.ExchangeType, durable: false, autoDelete: true);
            var queue = await channel.QueueDeclareAsync(queue: "", durable: false, exclusive: true, autoDelete: true, arguments: queueArguments);
            await channel.QueueBindAsync(queue.QueueName, exchange, routingKey: "1");

            var tap = new MeteringTap(exchange, queue.QueueName, connection, channel);
            if (consume) await tap.ConsumeAsync();
            return tap;
        }

        public async Task ConsumeAsync()
        {
            var consumer = new AsyncEventingBasicConsumer(_channel);
            consumer.ReceivedAsync += (_, delivery) =>
            {
                var body = delivery.Body.ToArray();
                object? header = null;
                delivery.BasicProperties.Headers?.TryGetValue(MeteringTopology.VersionHeader, out header);
                _arrived.Enqueue(new Arrived(delivery.RoutingKey, delivery.BasicProperties.MessageId, delivery.BasicProperties.ContentType,
                    delivery.BasicProperties.DeliveryMode == DeliveryModes.Persistent, header is null ? null : Convert.ToInt32(header),
                    body, JsonSerializer.Deserialize<MeteringBatch>(body, Web)!));
                return Task.CompletedTask;
            };
            await _channel.BasicConsumeAsync(_queue, autoAck: true, consumer);
        }

        /// <summary>Waits until every record has arrived at least once; returns the batches in arrival order.</summary>
        public async Task<IReadOnlyList<Arrived>> UntilAllArriveAsync(MeteringRecord[] records)
        {
            await Eventually.Until(
                () => Task.FromResult(_arrived.SelectMany(a => a.Batch.Records).Select(r => r.RecordId).Distinct().Count()),
                count => count >= records.Length);
            await Task.Delay(200); // let late duplicates in, so the checks see them too
            return _arrived.ToArray();
        }

        public async ValueTask DisposeAsync()
        {
            await _channel.DisposeAsync();
            await _connection.DisposeAsync();
        }
    }

    /// <summary>These tests exercise the SDK alone against exchanges of their own, so they connect as the platform, not as a node.</summary>
    static BrokerSettings PlatformBroker()
    {
        var platform = ServiceSettings.FromEnvironment();
        return BrokerSettings.FromEnvironment() with { User = platform.RabbitUser, Password = platform.RabbitPassword };
    }
}
