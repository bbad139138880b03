namespace Throughput.Http;

/// <summary>
/// The kinds of problem the API answers with, one per thing a client does about it, each named by a stable URI in the
/// problem's <c>type</c>. They are tag URIs (RFC 4151): stable strings to compare, not pages to fetch, since the API has
/// no public home of its own to point at; the OpenAPI document declares each with its meaning, and docs/architecture.md lists them.
/// </summary>
public static class ProblemTypes
{
    public sealed record Kind(string Name, int Status, string Title, string Meaning)
    {
        public string Uri { get; } = Prefix + Name;
    }

    const string Prefix = "tag:throughput,2026:problem:";

    public static readonly Kind InvalidFields = new("invalid-fields", 400,
        "One or more fields are invalid", "The fields named in errors are missing, malformed (400) or well-formed but refused (422): correct them and send again.");
    public static readonly Kind BadRequest = new("bad-request", 400, "Bad request", "The request could not be read (a header or the body's framing): correct it and send again.");
    public static readonly Kind Unauthenticated = new("unauthenticated", 401, "Unauthorized", "No API key, or one that is unknown, revoked or malformed.");
    public static readonly Kind Forbidden = new("forbidden", 403, "Forbidden", "The key's role, tenant or serving-node scope does not cover this.");
    public static readonly Kind NotFound = new("not-found", 404, "Not found", "Nothing with that id is visible to this key.");
    public static readonly Kind Conflict = new("conflict", 409, "Conflict", "The state forbids it (the pool is exhausted, the deployment released, the tenant suspended): retrying the same request will not help.");
    public static readonly Kind ConcurrentChange = new("concurrent-change", 409, "Conflict", "Another change to the same resource won a race: retry the request.");
    public static readonly Kind PreconditionFailed = new("precondition-failed", 412, "Precondition failed", "The resource changed since the ETag sent in If-Match: read it again.");
    public static readonly Kind BodyTooLarge = new("body-too-large", 413, "Request body too large", "The body is over the host's limit.");
    public static readonly Kind RuleViolated = new("rule-violated", 422, "Rule violated", "Well-formed, but a business rule refuses it (an amount off the model's minimum or increment): detail says which.");
    public static readonly Kind IdempotencyKeyReused = new("idempotency-key-reused", 422, "Idempotency-Key reused", "The Idempotency-Key was used before for a different request: use a new key.");
    public static readonly Kind PreconditionRequired = new("precondition-required", 428, "Precondition required", "Send the resource's ETag in If-Match.");
    public static readonly Kind RateLimited = new("rate-limited", 429, "Too many requests", "The key (or, without one, the address) is over its request rate: wait Retry-After seconds.");
    public static readonly Kind Unavailable = new("unavailable", 503, "Service unavailable",
        "A dependency (the database, the broker, the host owning a lease) is not reachable for now: retry after Retry-After seconds, with the same Idempotency-Key.");

    /// <summary>Every kind; a status's first kind here is the one a problem of that status without field errors is.</summary>
    public static readonly IReadOnlyList<Kind> All =
        [BadRequest, InvalidFields, Unauthenticated, Forbidden, NotFound, Conflict, ConcurrentChange, PreconditionFailed, BodyTooLarge, RuleViolated,
         IdempotencyKeyReused, PreconditionRequired, RateLimited, Unavailable];

    /// <summary>What a problem of this status can be: field errors where a body or parameters are read, and what only keyed writes meet.</summary>
    public static IEnumerable<Kind> Of(int status, bool idempotent) =>
        All.Where(k => (k.Status == status || (k == InvalidFields && status == 422)) && (k != IdempotencyKeyReused || idempotent));

    /// <summary>
    /// Names the kind of a problem its maker left to the status: field errors, or the status's one kind. A status with no
    /// kind of ours (405, 415) keeps about:blank, whose meaning is the status's own.
    /// </summary>
    public static void Name(Microsoft.AspNetCore.Mvc.ProblemDetails problem)
    {
        if (problem.Type?.StartsWith(Prefix, StringComparison.Ordinal) == true) return;
        var status = problem.Status ?? 500;
        problem.Type = problem is Microsoft.AspNetCore.Http.HttpValidationProblemDetails { Errors.Count: > 0 } ? InvalidFields.Uri
            : All.FirstOrDefault(k => k.Status == status)?.Uri ?? "about:blank";
    }
}
