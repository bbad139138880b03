using System.Security.Claims;
using Marten;
using Throughput.Access;

namespace Throughput.Metering;

public enum QuarantineReason
{
    MalformedMessage,
    InvalidRecord,
    UnknownProducer,
    UnknownDeployment,
    ReleasedDeployment,
    NotServedByProducer,
    TimestampInFuture,
    UnauthenticatedProducer,
    RevokedProducer,
    TimestampTooOld,
    WrongContentType,
    MissingVersionHeader,
    ConflictingReplay,
    SpilloverOff,
    UnknownAdapter,
    WrongPhase,
    SpilloverCapReached,
}

/// <summary>Metering input that was refused, with the reason. Never billed; kept for the producer's owner to see and fix.</summary>
/// <param name="Id">The quarantine entry's id.</param>
/// <param name="Reason">Why it was refused (docs/security.md lists the reasons).</param>
/// <param name="Detail">What exactly was wrong, in words.</param>
/// <param name="ProducerId">The serving node that sent it, when known.</param>
/// <param name="Sequence">The metering message's sequence number, when known.</param>
/// <param name="RecordId">The refused record's id; null when the whole message was refused.</param>
/// <param name="DeploymentId">The deployment the record named, when known.</param>
/// <param name="Excerpt">A refused message's first 2,048 characters, when it could not be read; null for a refused record.</param>
/// <param name="QuarantinedAt">When it was refused.</param>
public sealed record QuarantinedMetering(
    Guid Id,
    QuarantineReason Reason,
    string Detail,
    string? ProducerId,
    long? Sequence,
    string? RecordId,
    string? DeploymentId,
    string? Excerpt,
    DateTimeOffset QuarantinedAt);

public static class Quarantine
{
    /// <summary>How much of a refused message body is kept for diagnosis.</summary>
    public const int ExcerptLength = 2048;

    public static QuarantinedMetering Message(QuarantineReason reason, string detail, MeteringFrame? frame, string? excerpt, DateTimeOffset now) =>
        new(Guid.CreateVersion7(now), reason, detail, frame?.ProducerId is { Length: > 0 } p ? p : null, frame?.Sequence is > 0 ? frame.Sequence : null,
            null, null, excerpt is null ? null : excerpt[..Math.Min(excerpt.Length, ExcerptLength)], now);

    public static QuarantinedMetering Record(QuarantineReason reason, string detail, MeteringFrame frame, in MeteredRecord record, DateTimeOffset now) =>
        new(Guid.CreateVersion7(now), reason, detail, frame.ProducerId, frame.Sequence, record.RecordId is { Length: > 0 } r ? r : null,
            record.DeploymentId is { Length: > 0 } d ? d : null, null, now);

    public static IEndpointRouteBuilder MapQuarantine(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/operator/quarantine", async (QuarantineReason? reason, string? producerId, int? limit, IQuerySession session, CancellationToken ct) =>
            {
                var query = session.Query<QuarantinedMetering>().AsQueryable();
                if (reason is { } r) query = query.Where(q => q.Reason == r);
                if (producerId is { Length: > 0 } p) query = query.Where(q => q.ProducerId == p);
                return TypedResults.Ok(await query.OrderByDescending(q => q.QuarantinedAt).Take(Math.Clamp(limit ?? 100, 1, 1000)).ToListAsync(ct));
            })
            .RequireAuthorization(Policies.Operator).WithTags("Operator: metering")
            .WithName("ListQuarantinedMetering").WithSummary("Refused metering input, newest first, with the reason.");

        // A node sees what was refused under its own producer id: what it sent, and anything another sender put its id on.
        app.MapGet("/v1/metering/refused", async Task<Results<Ok<IReadOnlyList<QuarantinedMetering>>, ProblemHttpResult>> (QuarantineReason? reason, int? limit, ClaimsPrincipal user, IQuerySession session, CancellationToken ct) =>
            {
                if (user.Producer() is not { } producer)
                    return TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Not a serving node's key",
                        detail: "Only a serving node's key, issued with its producer id as its name, reads what was refused under that id; operators read /v1/operator/quarantine.");
                var query = session.Query<QuarantinedMetering>().Where(q => q.ProducerId == producer);
                if (reason is { } r) query = query.Where(q => q.Reason == r);
                return TypedResults.Ok(await query.OrderByDescending(q => q.QuarantinedAt).Take(Math.Clamp(limit ?? 100, 1, 1000)).ToListAsync(ct));
            })
            .RequireAuthorization(Policies.ServingNode).WithTags("Metering (serving nodes)")
            .WithName("ListRefusedMetering").WithSummary("What the platform refused of this node's metering, newest first, with the reason.")
            .ProducesProblem(403);
        return app;
    }
}
