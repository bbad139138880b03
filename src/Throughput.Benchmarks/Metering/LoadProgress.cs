using System.Diagnostics;
using System.Globalization;

namespace Throughput.Benchmarks.Metering;

/// <summary>How the load moves between two reports: records handed to the SDK, confirmed by the broker and durable, per second.</summary>
public sealed class LoadProgress(LoadDriver load, DurableObserver observer)
{
    (long At, long Handed, long Confirmed, long Durable) _last = (Stopwatch.GetTimestamp(), load.HandedOver, load.Confirmed, observer.Records);

    public TimeSpan SinceLast => Stopwatch.GetElapsedTime(_last.At);

    /// <summary>The rates since the previous call (or the start), and the records handed over but not yet durable.</summary>
    public string Next()
    {
        var now = (At: Stopwatch.GetTimestamp(), Handed: load.HandedOver, Confirmed: load.Confirmed, Durable: observer.Records);
        var s = Stopwatch.GetElapsedTime(_last.At, now.At).TotalSeconds;
        var line = $"handed over {Number((now.Handed - _last.Handed) / s)}/s, confirmed {Number((now.Confirmed - _last.Confirmed) / s)}/s, " +
                   $"durable {Number((now.Durable - _last.Durable) / s)}/s, in flight {Number(now.Handed - now.Durable)}";
        _last = now;
        return line;
    }

    /// <summary>Waits until every record the broker confirmed is durable; false if that takes longer than <paramref name="timeout"/>.</summary>
    public static async Task<bool> DrainAsync(LoadDriver load, DurableObserver observer, TimeSpan timeout, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        while (observer.Records < load.Confirmed)
        {
            if (Stopwatch.GetElapsedTime(started) > timeout) return false;
            await Task.Delay(50, ct);
        }
        return true;
    }

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);
}
