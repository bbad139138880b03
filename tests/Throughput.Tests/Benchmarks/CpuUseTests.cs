using System.Diagnostics;
using Throughput.Benchmarks.Harness;

namespace Throughput.Tests.Benchmarks;

public sealed class CpuUseTests
{
    [Fact]
    public void A_host_that_runs_only_the_daemon_is_counted_under_a_role_of_its_own()
    {
        var self = Environment.ProcessId;
        var before = CpuUse.Now(hostPid: -1, daemonPid: self);
        var until = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 4;
        while (Stopwatch.GetTimestamp() < until) Thread.SpinWait(100);
        var use = CpuUse.Between(before, CpuUse.Now(hostPid: -1, daemonPid: self));

        Assert.Contains(use, u => u.Role == "platform daemon" && u.Cores > 0);
        Assert.DoesNotContain(use, u => u.Role == "benchmark");
    }
}
