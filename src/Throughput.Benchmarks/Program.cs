using Throughput.Benchmarks.Admission;
using Throughput.Benchmarks.Drills;
using Throughput.Benchmarks.Drills.Failover;
using Throughput.Benchmarks.Drills.Faults;
using Throughput.Benchmarks.Drills.ScaleOut;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Invoicing;
using Throughput.Benchmarks.Metering;
using Throughput.Benchmarks.Scale;

// Usage: Throughput.Benchmarks <benchmark | drill | all | list> [--option value …] [--results results.md]
// Each benchmark is a subcommand; `all` runs every one with its defaults and writes one Markdown table (with the machine)
// to --results, by default artifacts/benchmark-results.md.
IBenchmark[] benchmarks = [new MeteringBenchmark(), new AdmissionChecksBenchmark(), new HiccupsBenchmark(), new AdmissionHttpBenchmark(), new AdmissionFeedbackBenchmark(), new LeaseRenewalsBenchmark(), new InvoicingBenchmark(), new CloseBenchmark(), new MeteringParseBenchmark()];
// Run by name only, never by `all`: drills inflict faults on scratch services rather than measure speed, the scale
// sweep takes twenty minutes and the replicas sweep a quarter of an hour, and invoicing already measures the rebuild on its log.
IBenchmark[] drills = [new FaultDrill(), new FailoverDrill(), new ScaleOutDrill(), new ScaleBenchmark(), new ReplicasBenchmark(), new RebuildBenchmark(), new StaleGapDrill()];

// The bare Kestrel server of the admission ceiling, started by admission-http as a child process of this dll.
if (args is [BareAdmission.Command, var bodyBytes, "--urls", var urls])
    return await BareAdmission.ServeAsync(urls, int.Parse(bodyBytes, System.Globalization.CultureInfo.InvariantCulture));

// One serving process of the replicas benchmark, started by it as a child process of this dll.
if (args is [ReplicaProcess.Command]) return await ReplicaProcess.RunAsync();

using var interrupted = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true; // stop the run gracefully: the host it started is stopped and its queues removed
    interrupted.Cancel();
};

try
{
    if (args is [] or ["list" or "help" or "--help" or "-h", ..])
    {
        PrintUsage(benchmarks, drills);
        return args is [] ? 2 : 0;
    }
    var options = BenchOptions.Parse(args[1..]);
    // `all` always leaves its table behind: that run is the benchmark report.
    var resultsFile = options.Text("results", args[0] == "all" ? Path.Combine("artifacts", "benchmark-results.md") : "");
    var chosen = args[0] == "all" ? benchmarks : benchmarks.Concat(drills).Where(b => b.Name == args[0]).ToArray();
    if (chosen.Length == 0) throw new UsageException($"no benchmark '{args[0]}'");

    var reports = new List<BenchmarkReport>();
    var started = System.Diagnostics.Stopwatch.GetTimestamp();
    foreach (var benchmark in chosen)
    {
        BenchmarkReport report;
        try
        {
            report = await benchmark.RunAsync(options, interrupted.Token);
        }
        catch (Exception e) when (chosen.Length > 1 && e is not OperationCanceledException and not UsageException)
        {
            // One benchmark failing does not cost the report the others' figures; the failure is a row of its own.
            Console.Error.WriteLine(e);
            report = new BenchmarkReport(benchmark.Name, [new("did not complete", e.Message, "completes", false)], []);
        }
        Reports.Print(report, Console.Out);
        reports.Add(report);
    }
    if (resultsFile.Length > 0)
    {
        var machine = Machine.Markdown(await Machine.DescribeAsync(interrupted.Token));
        if (Path.GetDirectoryName(Path.GetFullPath(resultsFile)) is { } folder) Directory.CreateDirectory(folder);
        await File.WriteAllTextAsync(resultsFile, machine + Environment.NewLine + Reports.Markdown(reports));
        Console.WriteLine($"\nresults written to {resultsFile}");
        if (args[0] == "all")
        {
            var took = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            await BenchmarksDoc.WriteAsync($"### Last report of `bash infra/bench.sh all` ({took.TotalMinutes:0} min)\n\n{machine}\n{Reports.Markdown(reports)}", interrupted.Token);
            Console.WriteLine($"report written to {BenchmarksDoc.Path}");
        }
    }
    return reports.All(r => r.TargetsMet) ? 0 : 1;
}
catch (UsageException e)
{
    Console.Error.WriteLine(e.Message);
    PrintUsage(benchmarks, drills);
    return 2;
}
catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
{
    Console.Error.WriteLine("interrupted");
    return 130;
}

static void PrintUsage(IReadOnlyList<IBenchmark> benchmarks, IReadOnlyList<IBenchmark> drills)
{
    Console.Error.WriteLine("usage: Throughput.Benchmarks <benchmark | drill | all | list> [--option value …] [--results results.md]");
    foreach (var benchmark in benchmarks.Concat(drills))
    {
        Console.Error.WriteLine($"\n  {benchmark.Name}: {benchmark.Summary}");
        foreach (var (option, meaning) in benchmark.Options) Console.Error.WriteLine($"    --{option,-22} {meaning}");
    }
}
