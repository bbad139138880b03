using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using Npgsql;
using NpgsqlTypes;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Throughput.Benchmarks.Harness;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Benchmarks.Metering;

/// <summary>How the raw metering path is loaded: the platform run's shape, so the two figures compare.</summary>
/// <param name="RecordsPerMessage">Records in each published batch: the platform run's confirmed records ÷ confirmed batches.</param>
/// <param name="CommitDelay">Added inside every consumer transaction; zero except in the harness's own tests.</param>
public sealed record MeteringCeilingShape(int Deployments, int Producers, int RecordsPerMessage, int InFlight, int Partitions, int BatchMessageLimit,
    TimeSpan BatchTimeLimit, TimeSpan CommitDelay)
{
    /// <summary>The platform's defaults (Metering:Partitions 4, BatchMessageLimit 200 with prefetch twice that, BatchTimeLimit 5 ms).</summary>
    public static MeteringCeilingShape Platform(int deployments, int producers, int recordsPerMessage, int inFlight) =>
        new(deployments, producers, recordsPerMessage, inFlight, 4, 200, TimeSpan.FromMilliseconds(5), TimeSpan.Zero);

    public int Prefetch => BatchMessageLimit * 2;
}

/// <summary>What the raw path sustained: records committed per second while measuring, and the rows written per batch.</summary>
public sealed record MeteringCeilingRun(double RecordsPerSecond, double MessagesPerBatch, double RowsPerBatch, long Published, long Committed,
    IReadOnlyList<(string Role, double Cores)> Cpu);

/// <summary>
/// The metering path with nothing of the platform's on it: the SDK's batch bytes published with RabbitMQ.Client and
/// publisher confirms to a consistent-hash exchange of its own, bare consumers with the platform's prefetch and batch
/// limits, and each consumer batch written to PostgreSQL as the rows the platform writes for one (a dedupe claim per
/// message, a meter per deployment, the usage event and its stream's version) in one upsert, one transaction, acked
/// after the commit. Scratch exchange, queues and schema of its own, removed afterwards.
/// </summary>
public sealed class MeteringCeiling : IAsyncDisposable
{
    const string Weight = "100"; // the platform's points per partition on the hash ring

    // Records published and committed, batches, messages and rows written, over the consumers and publishers.
    long _published, _committed, _batches, _messages, _rows;

    readonly MeteringCeilingShape _shape;
    readonly string _exchange;
    readonly string _schema;
    readonly BrokerSettings _broker;
    readonly NpgsqlDataSource _database;
    readonly CancellationTokenSource _stop = new();
    readonly List<Task> _loops = [];
    readonly List<IConnection> _connections = [];

    MeteringCeiling(MeteringCeilingShape shape, string runId, BrokerSettings broker)
    {
        _shape = shape;
        _exchange = $"bench.ceiling.{runId}";
        _schema = $"bench_ceiling_{runId}";
        _broker = broker;
        _database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
    }

    public long Committed => Interlocked.Read(ref _committed);

    IEnumerable<string> Queues => Enumerable.Range(0, _shape.Partitions).Select(p => $"{_exchange}.p{p}");

    /// <summary>Runs the raw path for a warm-up and a measured span; the scratch topology is removed whatever happens.</summary>
    public static async Task<MeteringCeilingRun> MeasureAsync(MeteringCeilingShape shape, TimeSpan warmup, TimeSpan duration, CancellationToken ct)
    {
        await using var ceiling = new MeteringCeiling(shape, Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4)), Services.PlatformBroker());
        await ceiling.StartAsync(ct);
        // The warm-up counts from the first commit: a cold broker or database can take longer than it to start.
        for (var started = Stopwatch.GetTimestamp(); ceiling.Committed == 0; await Task.Delay(10, ct))
            if (Stopwatch.GetElapsedTime(started) > TimeSpan.FromMinutes(1)) throw new TimeoutException("The ceiling committed nothing in a minute");
        await Task.Delay(warmup, ct);
        var from = ceiling.Take();
        await Task.Delay(duration, ct);
        var to = ceiling.Take();
        var batches = Math.Max(1, to.Batches - from.Batches);
        return new MeteringCeilingRun((to.Records - from.Records) / Stopwatch.GetElapsedTime(from.At, to.At).TotalSeconds,
            (to.Messages - from.Messages) / (double)batches, (to.Rows - from.Rows) / (double)batches,
            Interlocked.Read(ref ceiling._published), ceiling.Committed, CpuUse.Between(from.Cpu, to.Cpu));
    }

    Tally Take() => new(Stopwatch.GetTimestamp(), Committed, Interlocked.Read(ref _batches), Interlocked.Read(ref _messages), Interlocked.Read(ref _rows),
        CpuUse.Now(Environment.ProcessId, "benchmark"));

    readonly record struct Tally(long At, long Records, long Batches, long Messages, long Rows, CpuUse Cpu);

    async Task StartAsync(CancellationToken ct)
    {
        await using (var create = _database.CreateCommand(
            $"create schema {_schema}; create table {_schema}.usage_rows (key text primary key, batch bigint not null, written_at timestamptz not null, records int not null)"))
            await create.ExecuteNonQueryAsync(ct);

        var factory = new ConnectionFactory { Uri = _broker.Uri };
        var consuming = await factory.CreateConnectionAsync("throughput-bench-ceiling-consumer", ct);
        _connections.Add(consuming);
        await using (var declare = await consuming.CreateChannelAsync(cancellationToken: ct))
        {
            await declare.ExchangeDeclareAsync(_exchange, MeteringTopology.ExchangeType, durable: true, autoDelete: false, cancellationToken: ct);
            foreach (var queue in Queues)
            {
                await declare.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, cancellationToken: ct);
                await declare.QueueBindAsync(queue, _exchange, Weight, cancellationToken: ct);
            }
        }
        foreach (var queue in Queues) _loops.Add(await ConsumeAsync(consuming, queue, ct));

        var deployments = Enumerable.Range(0, _shape.Deployments).Select(d => $"ceiling-deployment-{d}").ToList();
        for (var p = 0; p < _shape.Producers; p++)
        {
            var producer = $"ceiling-node{p}";
            var publishing = await factory.CreateConnectionAsync($"throughput-bench-ceiling-{producer}", ct);
            _connections.Add(publishing);
            var channel = await publishing.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), ct);
            // As the SDK does: one batch in flight per deployment, every deployment of the producer on its one channel.
            foreach (var deployment in deployments.Where((_, i) => i % _shape.Producers == p))
                _loops.Add(Task.Run(() => PublishAsync(channel, producer, deployment, _stop.Token), CancellationToken.None));
        }
    }

    async Task PublishAsync(IChannel channel, string producer, string deployment, CancellationToken stop)
    {
        var bodies = Bodies(producer, deployment, _shape.RecordsPerMessage);
        var properties = new BasicProperties
        {
            ContentType = MeteringTopology.ContentType,
            DeliveryMode = DeliveryModes.Persistent,
            UserId = _broker.User,
            Headers = new Dictionary<string, object?> { [MeteringTopology.VersionHeader] = MeteringTopology.CurrentVersion },
        };
        try
        {
            for (long sequence = 1; !stop.IsCancellationRequested; sequence++)
            {
                while (Interlocked.Read(ref _published) - Committed >= _shape.InFlight) await Task.Delay(1, stop);
                properties.MessageId = $"{producer}:{deployment}:{sequence.ToString(CultureInfo.InvariantCulture)}";
                Interlocked.Add(ref _published, _shape.RecordsPerMessage);
                await channel.BasicPublishAsync(_exchange, deployment, mandatory: true, properties, bodies[(int)(sequence % bodies.Length)], stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopped; what is in flight is dropped with the scratch queues.
        }
    }

    /// <summary>A few distinct bodies per deployment, written by the SDK's own serializer: the bytes a serving node publishes.</summary>
    static ReadOnlyMemory<byte>[] Bodies(string producer, string deployment, int records)
    {
        var now = DateTimeOffset.UtcNow;
        return [.. Enumerable.Range(0, 8).Select(b =>
        {
            var batch = Enumerable.Range(0, records).Select(r => LoadDriver.Uniform($"{producer}-{deployment}-{b}-{r}", deployment, r, now)).ToList();
            var body = new ArrayBufferWriter<byte>();
            MeteringBatchJson.Write(body, producer, b + 1, now, batch);
            return body.WrittenMemory;
        })];
    }

    /// <summary>A bare consumer on one partition queue, and the loop that folds its deliveries into batches, as MassTransit's batch consumer does.</summary>
    async Task<Task> ConsumeAsync(IConnection connection, string queue, CancellationToken ct)
    {
        var channel = await connection.CreateChannelAsync(cancellationToken: ct);
        await channel.BasicQosAsync(0, (ushort)_shape.Prefetch, global: false, ct);
        var deliveries = Channel.CreateUnbounded<(ulong Tag, string Key, string Deployment)>(new UnboundedChannelOptions { SingleReader = true });
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, delivery) =>
        {
            deliveries.Writer.TryWrite((delivery.DeliveryTag, delivery.BasicProperties.MessageId ?? "", delivery.RoutingKey));
            return Task.CompletedTask;
        };
        await channel.BasicConsumeAsync(queue, autoAck: false, consumer, ct);
        return Task.Run(() => FoldAsync(channel, queue, deliveries.Reader, _stop.Token), CancellationToken.None);
    }

    async Task FoldAsync(IChannel channel, string queue, ChannelReader<(ulong Tag, string Key, string Deployment)> deliveries, CancellationToken stop)
    {
        var batch = new List<(ulong Tag, string Key, string Deployment)>(_shape.BatchMessageLimit);
        try
        {
            while (!stop.IsCancellationRequested)
            {
                batch.Add(await deliveries.ReadAsync(stop));
                using (var window = CancellationTokenSource.CreateLinkedTokenSource(stop))
                {
                    window.CancelAfter(_shape.BatchTimeLimit);
                    try
                    {
                        while (batch.Count < _shape.BatchMessageLimit) batch.Add(await deliveries.ReadAsync(window.Token));
                    }
                    catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                    {
                        // The time limit: the batch goes as it is.
                    }
                }
                await WriteAsync(queue, batch, stop);
                await channel.BasicAckAsync(batch[^1].Tag, multiple: true, stop);
                Interlocked.Add(ref _committed, (long)batch.Count * _shape.RecordsPerMessage);
                batch.Clear();
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopped; unacked deliveries go with the scratch queues.
        }
    }

    /// <summary>The rows the platform writes for a consumer batch: one claim per message, one meter per deployment, the usage event and its stream's version.</summary>
    async Task WriteAsync(string queue, List<(ulong Tag, string Key, string Deployment)> batch, CancellationToken ct)
    {
        var number = Interlocked.Increment(ref _batches);
        string[] keys = [.. batch.Select(m => "claim:" + m.Key), .. batch.Select(m => "meter:" + m.Deployment).Distinct(), "event:" + number.ToString(CultureInfo.InvariantCulture), "stream:" + queue];
        await using var connection = await _database.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(ct);
        await using (var upsert = new NpgsqlCommand(
            $"insert into {_schema}.usage_rows (key, batch, written_at, records) select k, @batch, now(), @records from unnest(@keys) as k " +
            "on conflict (key) do update set batch = excluded.batch, written_at = excluded.written_at, records = excluded.records", connection, transaction))
        {
            upsert.Parameters.Add(new NpgsqlParameter("keys", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = keys });
            upsert.Parameters.AddWithValue("batch", number);
            upsert.Parameters.AddWithValue("records", batch.Count * _shape.RecordsPerMessage);
            await upsert.ExecuteNonQueryAsync(ct);
        }
        if (_shape.CommitDelay > TimeSpan.Zero) await Task.Delay(_shape.CommitDelay, ct);
        await transaction.CommitAsync(ct);
        Interlocked.Add(ref _messages, batch.Count);
        Interlocked.Add(ref _rows, keys.Length);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_loops).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (var connection in _connections) await connection.DisposeAsync();
        await using (var rabbit = await RabbitQueues.ConnectAsync(_broker, CancellationToken.None))
            await rabbit.DeleteAsync(Queues, [_exchange]);
        await Services.DropSchemaAsync(_schema);
        await _database.DisposeAsync();
        _stop.Dispose();
    }
}
