using Throughput.Benchmarks.Admission;
using Throughput.Benchmarks.Drills.ScaleOut;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Invoicing;
using Throughput.Benchmarks.Metering;

// Usage: Throughput.Benchmarks <benchmark | all | list> [--option value …] [--results results.md]
// Each benchmark is a subcommand; `all` runs every one with its defaults and writes one Markdown table.
IBenchmark[] benchmarks = [new MeteringBenchmark(), new AdmissionChecksBenchmark(), new AdmissionHttpBenchmark(), new AdmissionFeedbackBenchmark(), new InvoicingBenchmark()];
// Drills kill processes and need scratch services of their own (infra/drills/nodes.sh): run by name only, never by `all`.
IBenchmark[] drills = [new ScaleOutDrill()];

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
        PrintUsage([.. benchmarks, .. drills]);
        return args is [] ? 2 : 0;
    }
    var options = BenchOptions.Parse(args[1..]);
    var resultsFile = options.Text("results", "");
    var chosen = args[0] == "all" ? benchmarks : benchmarks.Concat(drills).Where(b => b.Name == args[0]).ToArray();
    if (chosen.Length == 0) throw new UsageException($"no benchmark '{args[0]}'");

    var reports = new List<BenchmarkReport>();
    foreach (var benchmark in chosen)
    {
        var report = await benchmark.RunAsync(options, interrupted.Token);
        Reports.Print(report, Console.Out);
        reports.Add(report);
    }
    if (resultsFile.Length > 0)
    {
        await File.WriteAllTextAsync(resultsFile, Reports.Markdown(reports));
        Console.WriteLine($"\nresults written to {resultsFile}");
    }
    return reports.All(r => r.TargetsMet) ? 0 : 1;
}
catch (UsageException e)
{
    Console.Error.WriteLine(e.Message);
    PrintUsage([.. benchmarks, .. drills]);
    return 2;
}
catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
{
    Console.Error.WriteLine("interrupted");
    return 130;
}

static void PrintUsage(IReadOnlyList<IBenchmark> benchmarks)
{
    Console.Error.WriteLine("usage: Throughput.Benchmarks <benchmark | all | list> [--option value …] [--results results.md]");
    foreach (var benchmark in benchmarks)
    {
        Console.Error.WriteLine($"\n  {benchmark.Name}: {benchmark.Summary}");
        foreach (var (option, meaning) in benchmark.Options) Console.Error.WriteLine($"    --{option,-22} {meaning}");
    }
}
