namespace Throughput.Webhooks;

public enum DeliveryStatus
{
    Pending,
    Delivered,
    Failed,
}

/// <summary>One try at a delivery: when, the receiver's status code (null when it could not be reached) or the error, and the wait chosen after it.</summary>
/// <param name="At">When the attempt was made.</param>
/// <param name="StatusCode">The receiver's HTTP status; null when it could not be reached.</param>
/// <param name="Error">Why it failed when there was no answer (timeout, refused connection, …); null otherwise.</param>
/// <param name="RetryIn">The wait chosen before the next attempt (hh:mm:ss); null after a success or the last attempt.</param>
public sealed record DeliveryAttempt(DateTimeOffset At, int? StatusCode, string? Error, TimeSpan? RetryIn);

/// <summary>
/// One event for one endpoint, written by the subscription in the transaction that moves its progress, so each event
/// becomes each delivery once. The body is fixed here: every attempt sends (and signs) the same bytes under the same
/// <see cref="MessageId"/>, which receivers deduplicate on. <see cref="OrderKey"/> (the deployment, or the tenant for
/// invoices and credit notes) and <see cref="Sequence"/> (the event's place in the log) keep one key's deliveries in order.
/// </summary>
public sealed record WebhookDelivery(
    string Id,
    string EndpointId,
    string MessageId,
    string EventType,
    string OrderKey,
    long Sequence,
    string Body,
    DateTimeOffset CreatedAt,
    DeliveryStatus Status,
    DateTimeOffset NextAttemptAt,
    IReadOnlyList<DeliveryAttempt> Attempts)
{
    public static string IdOf(string messageKey, string endpointId) => $"{endpointId}:{messageKey}";

    /// <summary>
    /// The delivery after one attempt: delivered on any 2xx, else due again after the schedule's next wait lengthened by up to
    /// 20 % (jitter, so receivers coming back are not hit by every endpoint's retries at once), and failed for good once the
    /// schedule is spent.
    /// </summary>
    public WebhookDelivery After(DateTimeOffset at, int? statusCode, string? error, IReadOnlyList<TimeSpan> schedule, double jitter)
    {
        if (statusCode is >= 200 and < 300)
            return this with { Status = DeliveryStatus.Delivered, Attempts = [.. Attempts, new DeliveryAttempt(at, statusCode, null, null)] };
        var failures = Attempts.Count;
        if (failures >= schedule.Count)
            return this with { Status = DeliveryStatus.Failed, Attempts = [.. Attempts, new DeliveryAttempt(at, statusCode, error, null)] };
        // Jitter only lengthens: the schedule's sum stays the least time a receiver has to come back before a delivery fails.
        var wait = schedule[failures] * (1 + 0.2 * jitter);
        return this with { NextAttemptAt = at + wait, Attempts = [.. Attempts, new DeliveryAttempt(at, statusCode, error, wait)] };
    }
}
