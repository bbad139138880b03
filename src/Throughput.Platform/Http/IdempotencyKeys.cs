namespace Throughput.Http;

/// <summary>The <c>Idempotency-Key</c> header: a retry with the same key gets the first answer, never a second effect.</summary>
public static class IdempotencyKeys
{
    public const int MaxLength = 128;

    /// <summary>The request's key (null when it sent none), or the problem with it: too long, or with control characters.</summary>
    public static (string? Key, ProblemHttpResult? Problem) Of(HttpContext http)
    {
        string? key = http.Request.Headers["Idempotency-Key"];
        return key is { Length: > MaxLength } || key?.Any(char.IsControl) == true
            ? (null, Validation.Invalid(new Dictionary<string, string[]> { ["Idempotency-Key"] = [$"At most {MaxLength} characters, none of them control characters."] }, 422))
            : (key, null);
    }

    /// <summary>The answer to a key used before for another request.</summary>
    public static ProblemHttpResult Reused(string what) =>
        TypedResults.Problem(statusCode: 422, title: "Idempotency-Key reused", detail: $"This Idempotency-Key was used for a different {what}.");
}
