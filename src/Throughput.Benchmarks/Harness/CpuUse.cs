using System.Globalization;

namespace Throughput.Benchmarks.Harness;

/// <summary>
/// CPU time on this machine by role (platform host, benchmark, RabbitMQ, PostgreSQL, everything else), read from /proc,
/// so a run shows which process the cores went to. "other" is what the machine was busy with beyond the named roles:
/// it includes any build or test that ran at the same time.
/// </summary>
public sealed class CpuUse
{
    readonly Dictionary<int, (string Role, long Ticks)> _byProcess;
    readonly long _busy;
    readonly long _total;

    CpuUse(Dictionary<int, (string Role, long Ticks)> byProcess, long busy, long total)
    {
        _byProcess = byProcess;
        _busy = busy;
        _total = total;
    }

    /// <param name="daemonPid">A platform host running only the projection daemon beside <paramref name="hostPid"/>, if any.</param>
    public static CpuUse Now(int hostPid, string hostRole = "platform host", int? daemonPid = null)
    {
        var self = Environment.ProcessId;
        var byProcess = new Dictionary<int, (string Role, long Ticks)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || ProcessTicks(pid) is not var (comm, used)) continue;
            var role = pid == hostPid ? hostRole
                : pid == daemonPid ? "platform daemon"
                : pid == self ? "benchmark"
                : comm == "beam.smp" ? "rabbitmq"
                : comm.StartsWith("postgres", StringComparison.Ordinal) ? "postgresql"
                : null;
            if (role is not null) byProcess[pid] = (role, used);
        }
        var (busy, total) = MachineTicks();
        return new CpuUse(byProcess, busy, total);
    }

    /// <summary>
    /// Cores used per role between <paramref name="before"/> and <paramref name="after"/>, "other" and "idle" included. A
    /// role counts the processes alive at <paramref name="after"/>; what a process that exited meanwhile used (a closed
    /// PostgreSQL connection's backend) is in "other".
    /// </summary>
    public static IReadOnlyList<(string Role, double Cores)> Between(CpuUse before, CpuUse after)
    {
        var cores = Environment.ProcessorCount;
        var total = Math.Max(1, after._total - before._total);
        double Cores(long ticks) => (double)Math.Max(0, ticks) / total * cores;
        var roles = after._byProcess
            .Select(p => (p.Value.Role, Ticks: p.Value.Ticks - (before._byProcess.TryGetValue(p.Key, out var was) ? was.Ticks : 0)))
            .GroupBy(p => p.Role, StringComparer.Ordinal)
            .Select(g => (Role: g.Key, Ticks: g.Sum(p => p.Ticks)))
            .OrderBy(r => r.Role, StringComparer.Ordinal)
            .ToList();
        var busy = after._busy - before._busy;
        return
        [
            .. roles.Select(r => (r.Role, Cores(r.Ticks))),
            ("other", Cores(busy - roles.Sum(r => r.Ticks))),
            ("idle", Cores(total - busy)),
        ];
    }

    public static string Describe(IReadOnlyList<(string Role, double Cores)> use) =>
        string.Join(", ", use.Select(u => $"{u.Role} {u.Cores.ToString("0.00", CultureInfo.InvariantCulture)}"));

    static (string Comm, long Ticks)? ProcessTicks(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return null; // exited meanwhile
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
        var open = stat.IndexOf('(', StringComparison.Ordinal);
        var close = stat.LastIndexOf(')');
        var fields = stat[(close + 2)..].Split(' ');
        // After the command: state is field 3 of proc(5), utime 14 and stime 15.
        return (stat[(open + 1)..close], long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture));
    }

    static (long Busy, long Total) MachineTicks()
    {
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        // user nice system idle iowait irq softirq steal (guest time is already inside user)
        var total = cpu.Take(8).Sum();
        return (total - cpu[3] - cpu[4], total);
    }
}
