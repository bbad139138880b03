using System.Text.Json;
using FluentValidation;
using Microsoft.AspNetCore.Diagnostics;

namespace Throughput.Http;

/// <summary>Every refusal leaves as RFC 7807 problem details; bad input never becomes a 500.</summary>
public sealed class ProblemMapper(ILogger<ProblemMapper> log) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        var http = httpContext;
        var result = exception switch
        {
            RuleViolation { Kind: RuleKind.NotFound } v => Results.Problem(statusCode: 404, title: "Not found", detail: v.Message),
            RuleViolation { Kind: RuleKind.Conflict } v => Results.Problem(statusCode: 409, title: "Conflict", detail: v.Message),
            RuleViolation v => Results.Problem(statusCode: 422, title: "Rule violated", detail: v.Message),
            BadHttpRequestException { InnerException: JsonException json } => Results.ValidationProblem(
                new Dictionary<string, string[]> { [FieldOf(json.Path)] = ["The value is missing, malformed or of the wrong type."] },
                title: "The request body is not valid JSON for this endpoint."),
            BadHttpRequestException bad => Results.Problem(statusCode: bad.StatusCode, title: "Bad request", detail: bad.Message),
            JasperFx.ConcurrencyException or Marten.Exceptions.ExistingStreamIdCollisionException when http.Request.Headers.IfMatch.Count > 0 =>
                Results.Problem(statusCode: 412, title: "Precondition failed", detail: "The resource changed since the ETag you sent; read it again."),
            JasperFx.ConcurrencyException or Marten.Exceptions.ExistingStreamIdCollisionException or Marten.Exceptions.StreamLockedException =>
                Results.Problem(statusCode: 409, title: "Conflict", detail: "Another change to the same resource won; retry the request.", type: ProblemTypes.ConcurrentChange.Uri),
            _ when DatabaseOutage.Covers(exception) => Unavailable(http),
            _ => null,
        };
        if (result is null)
        {
            log.LogError(exception, "Unhandled exception on {Path}", http.Request.Path);
            return false;
        }
        await result.ExecuteAsync(http);
        return true;
    }

    /// <summary>A database failover takes tens of seconds: clients retry after a few, and a write either committed or did not.</summary>
    static IResult Unavailable(HttpContext http)
    {
        http.Response.Headers.RetryAfter = RetryAfterSeconds;
        return Results.Problem(statusCode: 503, title: "Service unavailable", detail: OutageDetail);
    }

    /// <summary>What a client is told about a database outage, in the answer and in the OpenAPI document.</summary>
    public const string OutageDetail =
        "The database is not reachable right now (a restart or failover); retry after the Retry-After seconds. A write that got this answer may or may not have been applied: repeat it with the same Idempotency-Key.";

    const string RetryAfterSeconds = "5";

    static string FieldOf(string? path) => string.IsNullOrEmpty(path) || path == "$" ? "body" : path.TrimStart('$', '.');
}

public static class Validation
{
    /// <summary>Runs the request's FluentValidation validator before the handler; failures are 400 problem details per field.</summary>
    public static RouteHandlerBuilder ValidateWith<T>(this RouteHandlerBuilder builder, IValidator<T> validator) =>
        builder.AddEndpointFilter(async (context, next) =>
        {
            var request = context.Arguments.OfType<T>().FirstOrDefault();
            if (request is null)
                return Results.ValidationProblem(new Dictionary<string, string[]> { ["body"] = ["A JSON request body is required."] });
            // Synchronous: no rule here reads anything, and the async path costs allocations on every hot-path request.
            var outcome = validator.Validate(request);
            if (outcome.IsValid) return await next(context);
            // Well-formed but refused content (a control character in a name) is 422; malformed input 400.
            var status = outcome.Errors.Any(e => e.ErrorCode == Unprocessable) ? 422 : 400;
            return Results.ValidationProblem(outcome.ToDictionary(), statusCode: status);
        }).ProducesValidationProblem();

    const string Unprocessable = "Unprocessable";

    /// <summary>Field errors a handler returns rather than throws: 400 for malformed input, 422 for well-formed but refused.</summary>
    public static ProblemHttpResult Invalid(IDictionary<string, string[]> errors, int status = 400) =>
        TypedResults.Problem(new HttpValidationProblemDetails(errors) { Status = status });

    /// <summary>Text people named: present, bounded, and free of control characters (PostgreSQL refuses NUL; logs and CSV suffer the rest).</summary>
    /// <param name="lines">Free text (a reason) may hold line breaks and tabs; a name may not.</param>
    public static IRuleBuilderOptions<T, string?> Text<T>(this IRuleBuilder<T, string?> rule, int maxLength, bool lines = false) =>
        rule.NotEmpty().MaximumLength(maxLength)
            .Must(text => text is null || !text.Any(c => char.IsControl(c) && !(lines && c is '\r' or '\n' or '\t')))
            .WithMessage("Control characters are not allowed.").WithErrorCode(Unprocessable);
}

/// <summary>Stream versions as ETags; writes that need the reader's view send it back in If-Match.</summary>
public static class ETags
{
    public static string For(long version) => $"\"{version}\"";

    public static void Set(HttpContext http, long version) => http.Response.Headers.ETag = For(version);

    /// <summary>The version the client says it saw, or a problem result to return instead.</summary>
    public static (long Version, ProblemHttpResult? Problem) RequireIfMatch(HttpContext http)
    {
        string? header = http.Request.Headers.IfMatch;
        if (string.IsNullOrEmpty(header))
            return (0, TypedResults.Problem(statusCode: 428, title: "Precondition required", detail: "Send the resource's ETag in If-Match."));
        var text = header.Trim();
        if (text.StartsWith("W/", StringComparison.Ordinal)) text = text[2..];
        return long.TryParse(text.Trim('"'), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var version)
            ? (version, null)
            : (0, TypedResults.Problem(statusCode: 412, title: "Precondition failed", detail: "If-Match is not an ETag this API issued."));
    }

    public static ProblemHttpResult Stale() =>
        TypedResults.Problem(statusCode: 412, title: "Precondition failed", detail: "The resource changed since the ETag you sent; read it again.");
}
