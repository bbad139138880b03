using System.ComponentModel;
using System.Runtime.InteropServices;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// An epoll set for the load's one thread: it waits until a connection is readable or the next request is due, whichever
/// comes first, with a nanosecond timeout (epoll_pwait2). One wait per wake-up replaces a scheduler thread's sleeps plus
/// a thread-pool hop per answer: on this virtualized 2-core machine each context switch is CPU taken from the host.
/// </summary>
internal sealed unsafe partial class Readiness : IDisposable
{
    const int CloseOnExec = 0x80000; // EPOLL_CLOEXEC
    const int Add = 1; // EPOLL_CTL_ADD
    const int Remove = 2; // EPOLL_CTL_DEL
    const uint Readable = 0x001 | 0x008 | 0x010; // EPOLLIN | EPOLLERR | EPOLLHUP
    const int Interrupted = 4; // EINTR
    const int SetTimerSlack = 29; // PR_SET_TIMERSLACK

    // struct epoll_event is packed on x86-64 (12 bytes) and naturally aligned elsewhere (16); its data field comes last.
    static readonly int EventSize = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86 ? 12 : 16;

    readonly int _descriptor;
    readonly byte[] _events;
    bool _noPreciseWait;

    public Readiness(int capacity)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("the admission-http load generator uses epoll (Linux)");
        _descriptor = EpollCreate1(CloseOnExec);
        if (_descriptor < 0) throw new Win32Exception(Marshal.GetLastPInvokeError(), "epoll_create1");
        _events = new byte[capacity * EventSize];
        // Linux otherwise lets this thread's timed waits end up to 50 µs late.
        _ = Prctl(SetTimerSlack, 1, 0, 0, 0);
    }

    /// <summary>Watches <paramref name="descriptor"/> for input; a wake-up reports <paramref name="token"/>.</summary>
    public void Watch(int descriptor, int token) => Control(Add, descriptor, token);

    public void Forget(int descriptor) => Control(Remove, descriptor, 0);

    /// <summary>
    /// Waits at most <paramref name="timeout"/> (zero: just looks) and writes the tokens of the readable descriptors to
    /// <paramref name="ready"/>; returns how many.
    /// </summary>
    public int Wait(TimeSpan timeout, Span<int> ready)
    {
        var capacity = Math.Min(ready.Length, _events.Length / EventSize);
        int count;
        fixed (byte* events = _events)
        {
            if (_noPreciseWait)
            {
                count = EpollWait(_descriptor, events, capacity, (int)Math.Ceiling(Math.Max(0, timeout.TotalMilliseconds)));
            }
            else
            {
                var wait = new TimeSpec { Seconds = Math.Max(0, timeout.Ticks) / TimeSpan.TicksPerSecond, Nanoseconds = Math.Max(0, timeout.Ticks) % TimeSpan.TicksPerSecond * 100 };
                try
                {
                    count = EpollPwait2(_descriptor, events, capacity, &wait, 0);
                }
                catch (EntryPointNotFoundException)
                {
                    _noPreciseWait = true; // glibc before 2.35: millisecond waits, so the scheduler's lateness grows (and is measured)
                    return 0;
                }
            }
        }
        if (count < 0)
        {
            var error = Marshal.GetLastPInvokeError();
            return error == Interrupted ? 0 : throw new Win32Exception(error, "epoll_pwait2");
        }
        for (var i = 0; i < count; i++) ready[i] = (int)MemoryMarshal.Read<ulong>(_events.AsSpan(i * EventSize + EventSize - 8, 8));
        return count;
    }

    public void Dispose() => _ = Close(_descriptor);

    void Control(int operation, int descriptor, int token)
    {
        Span<byte> entry = stackalloc byte[16];
        entry.Clear();
        MemoryMarshal.Write(entry, Readable);
        MemoryMarshal.Write(entry[(EventSize - 8)..], (ulong)token);
        fixed (byte* e = entry)
        {
            if (EpollCtl(_descriptor, operation, descriptor, e) < 0) throw new Win32Exception(Marshal.GetLastPInvokeError(), "epoll_ctl");
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static partial int EpollCtl(int epoll, int operation, int descriptor, byte* entry);

    [LibraryImport("libc", EntryPoint = "epoll_pwait2", SetLastError = true)]
    private static partial int EpollPwait2(int epoll, byte* events, int capacity, TimeSpec* timeout, nint signalMask);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static partial int EpollWait(int epoll, byte* events, int capacity, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int Prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int descriptor);
}
