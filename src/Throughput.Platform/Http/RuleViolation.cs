namespace Throughput.Http;

public enum RuleKind
{
    /// <summary>The request is well-formed but the current state forbids it (409).</summary>
    Conflict,

    /// <summary>The request breaks a business rule whatever the state (422).</summary>
    Unprocessable,

    /// <summary>The thing the request names does not exist, or is not the caller's (404).</summary>
    NotFound,
}

/// <summary>A decider's refusal. Deciders stay pure: they throw this, the HTTP edge turns it into problem details.</summary>
public sealed class RuleViolation(RuleKind kind, string message) : Exception(message)
{
    public RuleKind Kind { get; } = kind;

    public static RuleViolation Conflict(string message) => new(RuleKind.Conflict, message);

    public static RuleViolation Unprocessable(string message) => new(RuleKind.Unprocessable, message);

    public static RuleViolation NotFound(string message) => new(RuleKind.NotFound, message);
}
