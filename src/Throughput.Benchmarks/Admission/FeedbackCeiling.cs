using System.Diagnostics;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Throughput.Benchmarks.Harness;
using Throughput.Contracts;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// The broker's share of the feedback path with nothing of ours on it: RabbitMQ.Client publishes (publisher confirms, as
/// the admission push does) to a topic exchange of its own, and a consumer on an exclusive queue bound like a serving
/// node's admission feed (region.model.#) receives it. One message at a time; latency = publish called → delivery in the consumer.
/// </summary>
public static class FeedbackCeiling
{
    public static async Task<IReadOnlyList<double>> MeasureAsync(int samples, int warmup, TimeSpan gap, int bodyBytes, CancellationToken ct)
    {
        var exchange = $"bench.ceiling.admission.{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4))}";
        var broker = Services.PlatformBroker();
        var factory = new ConnectionFactory { Uri = broker.Uri };
        await using var publishing = await factory.CreateConnectionAsync("throughput-bench-ceiling-push", ct);
        await using var consuming = await factory.CreateConnectionAsync("throughput-bench-ceiling-feed", ct);
        await using var publisher = await publishing.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), ct);
        await using var feed = await consuming.CreateChannelAsync(cancellationToken: ct);
        await publisher.ExchangeDeclareAsync(exchange, AdmissionTopology.ExchangeType, durable: true, autoDelete: false, cancellationToken: ct);
        try
        {
            var queue = await feed.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true, cancellationToken: ct);
            await feed.QueueBindAsync(queue.QueueName, exchange, "bench-region.gpt-4o.#", cancellationToken: ct);
            TaskCompletionSource<long>? arrival = null;
            var consumer = new AsyncEventingBasicConsumer(feed);
            consumer.ReceivedAsync += (_, _) =>
            {
                arrival?.TrySetResult(Stopwatch.GetTimestamp());
                return Task.CompletedTask;
            };
            await feed.BasicConsumeAsync(queue.QueueName, autoAck: true, consumer, ct);

            var body = BareAdmission.Body(bodyBytes);
            var properties = new BasicProperties { ContentType = AdmissionTopology.ContentType, UserId = broker.User };
            var latencies = new List<double>(samples);
            for (var i = 0; i < warmup + samples; i++)
            {
                arrival = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
                var sent = Stopwatch.GetTimestamp();
                await publisher.BasicPublishAsync(exchange, AdmissionTopology.RoutingKey("bench-region", "gpt-4o", $"deployment-{i}"), false, properties, body, ct);
                var arrived = await arrival.Task.WaitAsync(TimeSpan.FromSeconds(10), ct);
                if (i >= warmup) latencies.Add(Stopwatch.GetElapsedTime(sent, arrived).TotalMilliseconds);
                await Task.Delay(gap, ct);
            }
            latencies.Sort();
            return latencies;
        }
        finally
        {
            await publisher.ExchangeDeleteAsync(exchange, cancellationToken: CancellationToken.None);
        }
    }
}
