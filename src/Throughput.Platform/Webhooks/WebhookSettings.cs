using System.Globalization;

namespace Throughput.Webhooks;

/// <summary>
/// What the operator allowed. Nothing is sent anywhere unless <c>Webhooks:AllowedHosts</c> names the receivers' hosts
/// (exact names, or <c>*.example.com</c> for its subdomains; loopback only when listed, like any other host); plain http
/// only with <c>Webhooks:AllowHttp</c>. <c>Webhooks:SecretKey</c> encrypts the signing secrets and is required with hosts.
/// </summary>
public sealed record WebhookSettings(
    IReadOnlyList<string> AllowedHosts,
    bool AllowHttp,
    byte[]? SecretKey,
    IReadOnlyList<TimeSpan> RetrySchedule,
    TimeSpan PollInterval,
    TimeSpan Timeout)
{
    /// <summary>
    /// The wait after each failed attempt (the first attempt is immediate): 27 h 35 min in all, after which the delivery is
    /// given up. As Svix and Stripe do, the waits grow, so a receiver that is down for a day is not hammered.
    /// </summary>
    public static readonly IReadOnlyList<TimeSpan> DefaultRetrySchedule =
    [
        TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(30), TimeSpan.FromHours(2), TimeSpan.FromHours(5),
        TimeSpan.FromHours(10), TimeSpan.FromHours(10),
    ];

    public bool Sends => AllowedHosts.Count > 0;

    public static WebhookSettings FromConfiguration(IConfiguration configuration)
    {
        var hosts = List(configuration["Webhooks:AllowedHosts"]);
        var key = configuration["Webhooks:SecretKey"] is { Length: > 0 } text ? Convert.FromBase64String(text) : null;
        if (hosts.Count > 0 && key is not { Length: 32 })
            throw new InvalidOperationException("Webhooks:AllowedHosts is set, so Webhooks:SecretKey must be 32 bytes in base64 (e.g. `openssl rand -base64 32`).");
        var schedule = List(configuration["Webhooks:RetrySchedule"]).Select(s => TimeSpan.Parse(s, CultureInfo.InvariantCulture)).ToList();
        if (ScheduleProblem(schedule, string.Equals(configuration["Webhooks:AllowShortRetrySchedule"], "true", StringComparison.OrdinalIgnoreCase)) is { } problem)
            throw new InvalidOperationException(problem);
        return new(hosts, string.Equals(configuration["Webhooks:AllowHttp"], "true", StringComparison.OrdinalIgnoreCase), key,
            schedule.Count > 0 ? schedule : DefaultRetrySchedule,
            Span(configuration["Webhooks:PollInterval"], TimeSpan.FromSeconds(1)),
            Span(configuration["Webhooks:Timeout"], TimeSpan.FromSeconds(10)));
    }

    /// <summary>Receivers are promised retries for at least a day (docs/webhooks.md); only a test or a demo may shorten them, and says so.</summary>
    public static readonly TimeSpan PromisedRetrySpan = TimeSpan.FromHours(24);

    static string? ScheduleProblem(List<TimeSpan> schedule, bool allowShort)
    {
        if (schedule.Any(wait => wait <= TimeSpan.Zero)) return "Webhooks:RetrySchedule: every wait must be longer than 0.";
        var span = schedule.Aggregate(TimeSpan.Zero, (sum, wait) => sum + wait);
        return schedule.Count > 0 && span < PromisedRetrySpan && !allowShort
            ? $"Webhooks:RetrySchedule retries for {span} in all; receivers are promised at least {PromisedRetrySpan.TotalHours} h. Lengthen it, or set Webhooks:AllowShortRetrySchedule=true for a test or a demo."
            : null;
    }

    static List<string> List(string? text) =>
        (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    static TimeSpan Span(string? text, TimeSpan fallback) => text is { Length: > 0 } ? TimeSpan.Parse(text, CultureInfo.InvariantCulture) : fallback;

    /// <summary>Why a receiver's address is refused, or null if the operator allows it.</summary>
    public string? Refuses(string? url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http"))
            return "Must be an absolute https URL.";
        if (uri.Scheme == "http" && !AllowHttp) return "Must be https (the operator has not allowed plain http).";
        if (!string.IsNullOrEmpty(uri.UserInfo)) return "Must not carry credentials; the signature authenticates the platform.";
        var host = uri.IdnHost;
        var allowed = AllowedHosts.Any(a => a.StartsWith("*.", StringComparison.Ordinal)
            ? host.EndsWith(a[1..], StringComparison.OrdinalIgnoreCase)
            : string.Equals(host, a, StringComparison.OrdinalIgnoreCase));
        return allowed ? null : $"The host '{host}' is not one the operator allows webhooks to (Webhooks:AllowedHosts).";
    }
}
