namespace Throughput.Benchmarks.Harness;

/// <summary>
/// The machine's own stalls with nothing of ours running: the floor under every latency percentile measured on it. Run
/// before admission-http (as `all` does), it tells a slow tail of the host from a machine that stops on its own.
/// </summary>
public sealed class HiccupsBenchmark : IBenchmark
{
    public string Name => "hiccups";

    public string Summary => "the idle machine's own stalls: how late a thread that sleeps 1 ms at a time wakes (jHiccup-style)";

    public IReadOnlyList<(string Option, string Meaning)> Options => [("duration", "seconds measured (15)")];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var duration = options.Seconds("duration", TimeSpan.FromSeconds(15));
        options.EnsureAllRead();
        var before = CpuUse.Now(hostPid: -1);
        var hiccups = Hiccups.Start();
        await Task.Delay(duration, cancellationToken);
        var machine = hiccups.Stop();
        var cpu = CpuUse.Between(before, CpuUse.Now(hostPid: -1));
        return new BenchmarkReport(Name,
        [
            new("a 1 ms sleep's extra delay p99 / p99.9 / max", machine.Delays),
            new("share of the time in hiccups ≥ 1 ms", machine.Share),
        ],
        [
            $"{duration.TotalSeconds:0} s; one thread sleeping 1 ms at a time, each wake's delay past the 1 ms recorded; CPU cores meanwhile: {CpuUse.Describe(cpu)}",
            "a request's latency percentile cannot be lower than what the machine's stalls impose: at 10,000 requests/s, 1 % of the time in stalls ≥ 1 ms delays about 1 % of the requests by that much",
        ]);
    }
}
