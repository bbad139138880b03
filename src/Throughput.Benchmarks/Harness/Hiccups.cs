using System.Diagnostics;
using System.Globalization;

namespace Throughput.Benchmarks.Harness;

/// <summary>
/// The machine's own stalls while a benchmark measures, as jHiccup records them: a thread asks to sleep 1 ms, again and
/// again, and notes how much later than that it woke. Whatever delays it (a virtual CPU the hypervisor took away, a
/// saturated run queue) delays the process under test the same way, so a latency percentile can be read beside it.
/// </summary>
public sealed class Hiccups
{
    static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(1);

    readonly Thread _thread;
    readonly List<double> _extraMs = [];
    volatile bool _stopping;
    long _started;
    long _stopped;

    Hiccups()
    {
        _thread = new Thread(Record) { IsBackground = true, Name = "hiccups" };
        _thread.Start();
    }

    public static Hiccups Start() => new();

    /// <summary>Stops recording; the extra delays past each 1 ms sleep, and what share of the span went to those of 1 ms or more.</summary>
    public HiccupFigures Stop()
    {
        _stopping = true;
        _thread.Join();
        var sorted = _extraMs.Order().ToList();
        var span = Stopwatch.GetElapsedTime(_started, _stopped).TotalMilliseconds;
        return new(Percentiles.Of(sorted, 99), Percentiles.Of(sorted, 99.9), Percentiles.Of(sorted, 100), span <= 0 ? 0 : sorted.Where(e => e >= 1).Sum() / span);
    }

    void Record()
    {
        _started = Stopwatch.GetTimestamp();
        while (!_stopping)
        {
            var before = Stopwatch.GetTimestamp();
            Thread.Sleep(Interval);
            _extraMs.Add(Math.Max(0, (Stopwatch.GetElapsedTime(before) - Interval).TotalMilliseconds));
        }
        _stopped = Stopwatch.GetTimestamp();
    }
}

/// <summary>What <see cref="Hiccups"/> recorded: the extra delays past each 1 ms sleep, and the share of the time in those of 1 ms or more.</summary>
public sealed record HiccupFigures(double P99Ms, double P999Ms, double MaxMs, double ShareAtLeast1Ms)
{
    /// <summary>"p99 / p99.9 / max" of the extra delay.</summary>
    public string Delays => $"{Ms(P99Ms)} / {Ms(P999Ms)} / {Ms(MaxMs)}";

    public string Share => ShareAtLeast1Ms.ToString("P2", CultureInfo.InvariantCulture);

    static string Ms(double milliseconds) => double.IsNaN(milliseconds) ? "n/a" : $"{milliseconds.ToString("0.00", CultureInfo.InvariantCulture)} ms";
}
