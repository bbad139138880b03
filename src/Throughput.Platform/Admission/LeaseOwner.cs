using System.Collections.Concurrent;
using System.Text.Json;
using Marten;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Throughput.Configuration;
using Throughput.Contracts;

namespace Throughput.Admission;

/// <summary>What a host asks of the lease owner: renew a replica's leases, give them all back, or list a deployment's.</summary>
public sealed record LeaseAsk(string ReplicaId, IReadOnlyList<LeaseDemand>? Renew = null, bool Release = false, string? List = null);

public sealed record LeaseDemand(LeasedDeployment Deployment, long TokensPerMinute, HeldShare? Held = null);

/// <summary>
/// One lease owner among the API hosts, so that a deployment's shares sum to its purchase however many hosts answer its
/// replicas. Every API host consumes one queue of the schema with RabbitMQ's single active consumer: the broker delivers to
/// one of them only, and hands the queue to another when that host's connection goes. Every host forwards each renewal,
/// release and listing to that queue (direct reply-to) and answers the node with the owner's reply, so the owner needs no
/// address and no credentials of its own. The owner pushes the leases that grew on <see cref="AdmissionLeaseTopology.Exchange"/>,
/// once per region the deployment is served from; a lost push costs nothing but the wait for the holder's next renewal.
/// </summary>
public sealed class LeaseOwner(AdmissionLeases leases, IDocumentStore store, ServiceSettings settings, TimeProvider clock, ILogger<LeaseOwner> log)
    : BackgroundService
{
    /// <summary>How long a host waits for the owner: renewals come every 250 ms, a later answer is of no use.</summary>
    public static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(2);

    const string DirectReplyTo = "amq.rabbitmq.reply-to";
    static readonly TimeSpan Reconnect = TimeSpan.FromSeconds(1);

    readonly SemaphoreSlim _publishing = new(1, 1);
    readonly ConcurrentDictionary<string, TaskCompletionSource<AdmissionLease[]>> _waiting = new(StringComparer.Ordinal);
    IChannel? _channel;
    long _asked;

    string Queue => $"throughput.admission.lease-owner.{store.Options.Events.DatabaseSchemaName}";

    /// <summary>Asks the owner, whichever host it is; <see cref="TimeoutException"/> when none answered in time.</summary>
    public async Task<AdmissionLease[]> AskAsync(LeaseAsk ask, CancellationToken ct)
    {
        var correlation = $"{Interlocked.Increment(ref _asked)}";
        var answer = new TaskCompletionSource<AdmissionLease[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[correlation] = answer;
        try
        {
            await PublishAsync("", Queue, new BasicProperties
            {
                ReplyTo = DirectReplyTo,
                CorrelationId = correlation,
                Expiration = $"{AnswerTimeout.TotalMilliseconds:0}", // a request the owner could not take in time is dropped, not answered late
            }, JsonSerializer.SerializeToUtf8Bytes(ask, AdmissionPush.Json), ct);
            return await answer.Task.WaitAsync(AnswerTimeout, ct);
        }
        finally
        {
            _waiting.TryRemove(correlation, out _);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var factory = new ConnectionFactory { Uri = settings.RabbitUri, ClientProvidedName = "throughput-lease-owner" };
                await using var connection = await factory.CreateConnectionAsync(settings.RabbitEndpoints, stoppingToken);
                var lost = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                connection.ConnectionShutdownAsync += (_, _) =>
                {
                    lost.TrySetResult();
                    return Task.CompletedTask;
                };
                // Asking and answering share one channel: direct reply-to wants the asker's publishes on the channel consuming the replies.
                var asking = await connection.CreateChannelAsync(cancellationToken: stoppingToken);
                await asking.ExchangeDeclareAsync(AdmissionLeaseTopology.Exchange, AdmissionTopology.ExchangeType, durable: true, autoDelete: false, cancellationToken: stoppingToken);
                await asking.QueueDeclareAsync(Queue, durable: false, exclusive: false, autoDelete: true,
                    arguments: new Dictionary<string, object?> { ["x-single-active-consumer"] = true }, cancellationToken: stoppingToken);
                var replies = new AsyncEventingBasicConsumer(asking);
                replies.ReceivedAsync += (_, delivery) =>
                {
                    if (delivery.BasicProperties.CorrelationId is { } id && _waiting.TryGetValue(id, out var waiting))
                        waiting.TrySetResult(JsonSerializer.Deserialize<AdmissionLease[]>(delivery.Body.Span, AdmissionPush.Json) ?? []);
                    return Task.CompletedTask;
                };
                await asking.BasicConsumeAsync(DirectReplyTo, autoAck: true, replies, stoppingToken);
                _channel = asking;

                var owning = await connection.CreateChannelAsync(cancellationToken: stoppingToken);
                var requests = new AsyncEventingBasicConsumer(owning);
                // The broker does not say when this consumer becomes the active one: alone on the queue it is at once, else by
                // its first request at the latest (deliveries come one at a time). Either way, from then on it is the owner.
                var owner = false;
                requests.ReceivedAsync += (_, delivery) =>
                {
                    if (!owner) leases.TakeOver(clock.GetUtcNow());
                    owner = true;
                    return AnswerAsync(delivery, stoppingToken);
                };
                // Auto-ack: a request lost with its owner is a renewal that failed, and the replica renews again in 250 ms.
                await owning.BasicConsumeAsync(Queue, autoAck: true, requests, stoppingToken);
                if (await owning.ConsumerCountAsync(Queue, stoppingToken) == 1 && !owner)
                {
                    leases.TakeOver(clock.GetUtcNow());
                    owner = true;
                }
                await lost.Task.WaitAsync(stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                log.LogWarning(e, "Lease owner link lost; connecting again in {Delay}", Reconnect);
            }
            catch (OperationCanceledException)
            {
                // Stopping.
            }
            _channel = null;
            try { await Task.Delay(Reconnect, stoppingToken); }
            catch (OperationCanceledException) { }
        }
    }

    async Task AnswerAsync(BasicDeliverEventArgs delivery, CancellationToken ct)
    {
        try
        {
            var ask = JsonSerializer.Deserialize<LeaseAsk>(delivery.Body.Span, AdmissionPush.Json)!;
            var now = clock.GetUtcNow();
            AdmissionLease[] answer;
            List<LeaseHandout> grown = [];
            if (ask.Renew is { } demands)
            {
                answer = new AdmissionLease[demands.Count];
                for (var i = 0; i < demands.Count; i++)
                {
                    var handouts = leases.Renew(ask.ReplicaId, demands[i].Deployment, demands[i].TokensPerMinute, demands[i].Held, now);
                    answer[i] = handouts[0].Lease;
                    grown.AddRange(handouts.Skip(1));
                }
            }
            else if (ask.Release)
            {
                grown.AddRange(leases.Release(ask.ReplicaId, now));
                answer = [];
            }
            else
            {
                answer = [.. leases.Of(ask.List ?? "", now)];
            }
            if (delivery.BasicProperties.ReplyTo is { } replyTo)
                await PublishAsync("", replyTo, new BasicProperties { CorrelationId = delivery.BasicProperties.CorrelationId },
                    JsonSerializer.SerializeToUtf8Bytes(answer, AdmissionPush.Json), ct);
            foreach (var (lease, d) in grown)
                foreach (var region in d.Regions)
                    await PublishAsync(AdmissionLeaseTopology.Exchange, AdmissionTopology.RoutingKey(region, d.Model, d.Id), new BasicProperties
                    {
                        ContentType = AdmissionTopology.ContentType,
                        UserId = settings.RabbitUser, // nodes take pushes only from the platform's user, which the broker vouches for
                        Headers = new Dictionary<string, object?> { [AdmissionTopology.VersionHeader] = AdmissionLeaseTopology.CurrentVersion },
                    }, JsonSerializer.SerializeToUtf8Bytes(lease, AdmissionPush.Json), ct);
        }
        catch (Exception e) when (e is JsonException or RabbitMQ.Client.Exceptions.RabbitMQClientException or InvalidOperationException)
        {
            log.LogWarning(e, "A lease request went unanswered");
        }
    }

    async Task PublishAsync(string exchange, string routingKey, BasicProperties properties, byte[] body, CancellationToken ct)
    {
        await _publishing.WaitAsync(ct);
        try
        {
            var channel = _channel ?? throw new TimeoutException("No link to the broker: the lease owner cannot be asked");
            await channel.BasicPublishAsync(exchange, routingKey, false, properties, body, ct);
        }
        finally
        {
            _publishing.Release();
        }
    }
}
