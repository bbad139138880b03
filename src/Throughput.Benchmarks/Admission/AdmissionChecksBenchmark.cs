using System.Globalization;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// The serving SDK's in-process admission: <c>AdmissionCache.TryAdmit</c> + <c>Complete</c> per request, on one thread and
/// then on every core, with no platform, broker or database involved.
/// </summary>
public sealed class AdmissionChecksBenchmark : IBenchmark
{
    const double TargetChecksPerSecond = 5_000_000;

    public string Name => "admission-checks";

    public string Summary => "in-process SDK admission (AdmissionCache TryAdmit + Complete): checks/s on one thread and on all cores, bytes allocated per check";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("duration", "seconds measured per thread count (5)"),
        ("warmup", "seconds of checks before measuring, for the JIT's tiers (3)"),
        ("deployments", "deployments with a limit in the cache (1000)"),
        ("threads", "threads of the all-cores run (the machine's cores)"),
    ];

    public Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var duration = options.Seconds("duration", TimeSpan.FromSeconds(5));
        var warmup = options.Seconds("warmup", TimeSpan.FromSeconds(3));
        var deploymentCount = options.Count("deployments", 1000);
        var threads = options.Count("threads", Environment.ProcessorCount);
        options.EnsureAllRead();

        var cache = CheckLoop.CacheWith(deploymentCount);
        var deployments = cache.Limits().Select(l => l.DeploymentId).Order(StringComparer.Ordinal).ToList();
        Log($"{deployments.Count} deployments in the cache; warming up for {warmup.TotalSeconds:0} s");
        CheckLoop.Run(cache, deployments, threads, warmup);
        cancellationToken.ThrowIfCancellationRequested();

        var (single, singleCpu) = Measure(cache, deployments, 1, duration);
        Log($"1 thread: {Number(single.PerSecond)} checks/s");
        cancellationToken.ThrowIfCancellationRequested();
        var (all, allCpu) = Measure(cache, deployments, threads, duration);
        Log($"{threads} threads: {Number(all.PerSecond)} checks/s");
        cancellationToken.ThrowIfCancellationRequested();
        var leasedCache = CheckLoop.CacheWith(deploymentCount, leased: true);
        CheckLoop.Run(leasedCache, deployments, 1, warmup);
        var (leased, _) = Measure(leasedCache, deployments, 1, duration);
        Log($"1 thread, leased buckets: {Number(leased.PerSecond)} checks/s");

        return Task.FromResult(new BenchmarkReport(Name,
        [
            new("checks/s, 1 thread (TryAdmit + Complete)", Number(single.PerSecond), "≥ 5,000,000", single.PerSecond >= TargetChecksPerSecond),
            new($"checks/s, {threads} threads", Number(all.PerSecond)),
            new("checks/s, 1 thread, buckets holding a lease (AdmissionCacheOptions.Leases)", Number(leased.PerSecond), "≥ 5,000,000", leased.PerSecond >= TargetChecksPerSecond),
            new("checks per CPU-second the benchmark got, 1 / all threads", $"{Number(PerCpuSecond(single, singleCpu))} / {Number(PerCpuSecond(all, allCpu))}"),
            new("ns per check per thread, 1 / all threads", $"{single.NanosecondsPerCheckPerThread:0} / {all.NanosecondsPerCheckPerThread:0}"),
            new("bytes allocated per check, 1 / all threads", $"{single.BytesPerCheck:0.###} / {all.BytesPerCheck:0.###}"),
            new("admitted share", $"{(double)(single.Admitted + all.Admitted) / Math.Max(1, single.Checks + all.Checks):P1}"),
        ],
        [
            $"{duration.TotalSeconds:0} s per run after {warmup.TotalSeconds:0} s warm-up on {Environment.ProcessorCount} cores; {deployments.Count} deployments, threads walk them round-robin from spread-out offsets; each check = TryAdmit(prompt 1000, cached 200, max output 250) + Complete at the estimate",
            "the target is held against ONE thread: all-cores figures depend on what else the machine runs",
            $"CPU cores used, 1 thread: {CpuUse.Describe(singleCpu)}; {threads} threads: {CpuUse.Describe(allCpu)} (other = anything else on the machine, e.g. builds)",
        ]));
    }

    static (CheckRun Run, IReadOnlyList<(string Role, double Cores)> Cpu) Measure(Serving.AdmissionCache cache, IReadOnlyList<string> deployments, int threads, TimeSpan duration)
    {
        var before = CpuUse.Now(hostPid: -1);
        var run = CheckLoop.Run(cache, deployments, threads, duration);
        return (run, CpuUse.Between(before, CpuUse.Now(hostPid: -1)));
    }

    /// <summary>Checks per second of CPU the benchmark process actually had: on a shared machine, the rate a core of its own would give.</summary>
    static double PerCpuSecond(CheckRun run, IReadOnlyList<(string Role, double Cores)> cpu) =>
        run.PerSecond / Math.Max(0.01, cpu.Where(c => c.Role == "benchmark").Sum(c => c.Cores));

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static void Log(string line) => Console.WriteLine($"[admission-checks {DateTime.Now:HH:mm:ss}] {line}");
}
