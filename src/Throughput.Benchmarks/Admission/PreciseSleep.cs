using System.Runtime.InteropServices;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// Sub-millisecond sleeps for the load scheduler. Thread.Sleep has millisecond granularity, and yielding in a loop costs a
/// context switch per turn (expensive on this virtualized machine and taken from the host on a shared one); a
/// nanosleep with the thread's timer slack cut to 1 ns wakes within tens of microseconds for one switch per request.
/// </summary>
internal static partial class PreciseSleep
{
    const int SetTimerSlack = 29; // PR_SET_TIMERSLACK

    /// <summary>Call once on the sleeping thread: Linux otherwise lets its timers fire up to 50 µs late.</summary>
    public static void TightenTimerSlack()
    {
        if (OperatingSystem.IsLinux()) _ = Prctl(SetTimerSlack, 1, 0, 0, 0);
    }

    public static void For(TimeSpan span)
    {
        if (!OperatingSystem.IsLinux())
        {
            Thread.Sleep(span);
            return;
        }
        _ = USleep((uint)Math.Max(1, span.Ticks / TimeSpan.TicksPerMicrosecond));
    }

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int Prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);

    [LibraryImport("libc", EntryPoint = "usleep")]
    private static partial int USleep(uint microseconds);
}
