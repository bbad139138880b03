using System.Globalization;

namespace Throughput.Hosting;

/// <summary>
/// A wall clock that reads a chosen instant when the host starts and runs at real speed from there. For demos, drills
/// and tests only: a host can live through a past month (and a later host on the system clock invoice it), or reach a
/// month end in seconds. Everything the platform dates follows it — purchases, usage windows, issuing — so serving
/// nodes metering into such a host must stamp their records on the same clock.
/// </summary>
public sealed class ShiftedClock(DateTimeOffset start) : TimeProvider
{
    readonly TimeSpan _offset = start - System.GetUtcNow();

    public DateTimeOffset Start => start;

    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + _offset;
}

public static class HostClock
{
    public const string StartSetting = "Clock:Start";

    // The offset must be written out: an instant read in the machine's local zone would shift by hours unnoticed.
    static readonly string[] Formats = ["yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFzzz"];

    /// <summary>The system clock, unless <c>Clock:Start</c> is set (off by default).</summary>
    public static TimeProvider FromConfiguration(IConfiguration configuration)
    {
        var text = configuration[StartSetting];
        if (string.IsNullOrWhiteSpace(text)) return TimeProvider.System;
        if (!DateTimeOffset.TryParseExact(text.Trim(), Formats, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var start))
            throw new InvalidOperationException($"{StartSetting} '{text}' is not an ISO 8601 instant with its offset, e.g. 2030-01-31T23:59:30Z.");
        return new ShiftedClock(start);
    }

    /// <summary>A shifted clock in production would date purchases, usage and invoices wrongly: say so at every start.</summary>
    public static void WarnIfShifted(WebApplication app)
    {
        if (app.Services.GetRequiredService<TimeProvider>() is not ShiftedClock clock) return;
        app.Logger.LogWarning(
            "{Setting} is set: this host's clock started at {Start:O} (now {Now:O}), not the system time. For demos, drills and tests only; never in production.",
            StartSetting, clock.Start, clock.GetUtcNow());
    }
}
