using System.Text;
using Marten;
using MassTransit;

namespace Throughput.Metering;

/// <summary>
/// A body that is not JSON at all fails before any consumer sees it; MassTransit moves it to the partition's
/// <c>_error</c> queue, and this observer records it in the quarantine with the reason, so it is visible and counted.
/// </summary>
public sealed class MalformedMessages(IDocumentStore store, TimeProvider clock, MeteringMetrics metrics, ILogger<MalformedMessages> log) : IReceiveObserver
{
    public Task PreReceive(ReceiveContext context) => Task.CompletedTask;

    public Task PostReceive(ReceiveContext context) => Task.CompletedTask;

    public Task PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType) where T : class => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception) where T : class => Task.CompletedTask;

    public async Task ReceiveFault(ReceiveContext context, Exception exception)
    {
        if (exception is not (System.Runtime.Serialization.SerializationException or System.Text.Json.JsonException)) return;
        try
        {
            var body = context.Body.GetBytes();
            var excerpt = Encoding.UTF8.GetString(body, 0, Math.Min(body.Length, Quarantine.ExcerptLength));
            var detail = (exception.InnerException ?? exception).Message;
            await using var session = store.LightweightSession();
            session.Store(Quarantine.Message(QuarantineReason.MalformedMessage, "the body is not valid JSON: " + detail, null, excerpt, clock.GetUtcNow()));
            await session.SaveChangesAsync(context.CancellationToken);
            metrics.Quarantined(QuarantineReason.MalformedMessage);
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException or OperationCanceledException)
        {
            // The message itself is safe in the _error queue; only the quarantine entry is missing.
            log.LogWarning(e, "Could not record a malformed metering message in the quarantine");
        }
    }
}
