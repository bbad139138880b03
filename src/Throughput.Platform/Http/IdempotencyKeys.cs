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

    /// <summary>
    /// The id of what a create request with this key makes, the same on every retry: <paramref name="prefix"/> and a hash of
    /// the caller's scope (its tenant, or the operators') and the key, so two callers' keys never meet.
    /// </summary>
    public static string IdFor(string prefix, string? tenantId, string key) =>
        prefix + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes((tenantId is null ? "operator" : "tenant:" + tenantId) + "\n" + key)))[..20];

    /// <summary>The answer to a key used before for another request.</summary>
    public static ProblemHttpResult Reused(string what) =>
        TypedResults.Problem(statusCode: 422, title: "Idempotency-Key reused", detail: $"This Idempotency-Key was used for a different {what}.",
            type: ProblemTypes.IdempotencyKeyReused.Uri);
}
