using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>
/// The full rebuild alone, on a log that is already there (the invoicing benchmark's, grown to a million usage events by
/// its run): every projection rebuilt in one pass with <c>infra/rebuild.sh</c>, then the raw ceiling on the same rows in
/// the same run, so code can be compared with code without the metering load before it. The invoicing benchmark measures
/// its rebuild the same way.
/// </summary>
public sealed partial class RebuildBenchmark : IBenchmark
{
    const double TargetRebuildEventsPerSecond = 100_000;
    const double TargetRebuildShareOfRaw = 0.5;

    public string Name => "rebuild";

    public string Summary => "full projection rebuild of an existing log in events/s, beside the raw read + deserialize of the same rows";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("schema", "PostgreSQL schema whose log is rebuilt, with no host running on it (bench_invoicing: grown by `invoicing` to 1M usage events)"),
        ("rebuild-env", "NAME=VALUE added to the rebuild's environment; repeatable"),
        ("host-dll", "the platform whose rebuild-projections runs (this repository's Release build)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var schema = options.Text("schema", "bench_invoicing");
        var environment = options.Pairs("rebuild-env");
        var hostDll = Services.PlatformHostDll(options);
        options.EnsureAllRead();
        var figures = new List<Figure>();
        var conditions = new List<string> { $"schema {schema}, platform {Path.GetFullPath(hostDll)}" };
        await MeasureAsync(hostDll, schema, environment, figures, conditions, cancellationToken);
        return new BenchmarkReport(Name, figures, conditions);
    }

    /// <summary>Rebuilds the schema with <c>infra/rebuild.sh</c> (its host stopped), then reads the same log bare: both figures and their ratio.</summary>
    public static async Task MeasureAsync(string hostDll, string schema, IReadOnlyList<(string Name, string Value)> environment, List<Figure> figures, List<string> conditions, CancellationToken ct)
    {
        Log("host stopped; rebuilding every projection with `bash infra/rebuild.sh`");
        var start = new ProcessStartInfo("bash")
        {
            ArgumentList = { Path.Combine(Services.RepositoryRoot(), "infra", "rebuild.sh") },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["THROUGHPUT_PLATFORM_DLL"] = Path.GetFullPath(hostDll);
        start.Environment["THROUGHPUT_PG_SCHEMA"] = schema;
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        // rebuild.sh execs the platform, so the rebuild is this process; its last line comes just before it exits.
        var cpuBefore = CpuUse.Now(process.Id, "rebuild");
        var cpuAfter = cpuBefore;
        var stderr = process.StandardError.ReadToEndAsync(ct);
        var lines = new List<string>();
        while (await process.StandardOutput.ReadLineAsync(ct) is { } line)
        {
            lines.Add(line);
            if (line.StartsWith("rebuil", StringComparison.Ordinal)) Log(line);
            if (line.StartsWith("rebuilt in", StringComparison.Ordinal)) cpuAfter = CpuUse.Now(process.Id, "rebuild");
        }
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0) throw new InvalidOperationException($"infra/rebuild.sh exited {process.ExitCode}: {await stderr}");

        var events = long.Parse(EventsInLog().Match(string.Join('\n', lines)).Groups[1].Value.Replace(",", "", StringComparison.Ordinal), CultureInfo.InvariantCulture);
        var pass = lines.Select(l => RebuiltOne().Match(l)).Single(m => m.Success);
        var (seconds, cpu, members) = (Seconds(pass.Groups[2]), Seconds(pass.Groups[3]), pass.Groups[4].Value.Split(", ", StringSplitOptions.RemoveEmptyEntries));
        var rate = seconds > 0 ? events / seconds : 0;
        figures.Add(new("events in the log", Number(events)));
        figures.Add(new($"full rebuild, every projection ({members.Length}) in one pass over the log, events/s", Number(rate), "≥ 100,000", rate >= TargetRebuildEventsPerSecond));
        figures.Add(new("  the same, events per CPU-second of the rebuild process", Number(cpu > 0 ? events / cpu : 0)));

        conditions.Add($"rebuild: {pass.Groups[1].Value} ({string.Join(" + ", members)}) {seconds:0.0} s, {cpu:0.0} s CPU"
            + "; events/s = events in the log ÷ wall time; CPU = the rebuild process's own (steadier than wall time when other work shares the cores)"
            + (environment.Count > 0 ? "; rebuild environment: " + string.Join(" ", environment.Select(e => $"{e.Name}={e.Value}")) : "; infra/rebuild.sh's runtime settings"));
        conditions.Add($"CPU cores while rebuilding (start-up included): {CpuUse.Describe(CpuUse.Between(cpuBefore, cpuAfter))}");

        Log("raw ceiling: reading the log and deserializing every event, nothing else");
        RebuildCeilingRun raw;
        try
        {
            raw = await RebuildCeiling.MeasureAsync(schema, ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The lag and rebuild figures above stand without their ceiling; the report says why it is missing.
            figures.Add(new("rebuild events/s: platform / raw read + deserialize", $"raw ceiling failed: {e.Message}", $"≥ {TargetRebuildShareOfRaw} × raw", false));
            return;
        }
        figures.Add(new Ceiling(rate, raw.EventsPerSecond).AtLeast("rebuild events/s: platform / raw read + deserialize", TargetRebuildShareOfRaw, Number));
        figures.Add(new Ceiling(cpu > 0 ? events / cpu : 0, raw.Cpu > TimeSpan.Zero ? raw.Events / raw.Cpu.TotalSeconds : 0).Beside("  the same per CPU-second: platform / raw", Number));
        conditions.Add($"rebuild ceiling: the same {Number(raw.Events)} rows of mt_events (type, data, bdata) read in order in this benchmark's process, each body deserialized to its CLR type by the platform's Marten serializer (its System.Text.Json options and converters), nothing else ({Number(raw.Unmapped)} rows of types no feature maps read but not deserialized); {raw.Took.TotalSeconds:0.0} s, {raw.Cpu.TotalSeconds:0.0} s CPU; no start-up in it, which the platform's figure includes");
    }

    static double Seconds(Group g) => double.Parse(g.Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"from ([\d,]+) events")]
    private static partial Regex EventsInLog();

    [GeneratedRegex(@"^rebuilt (\S+) in ([\d.]+) s, ([\d.]+) s CPU(?: \(one pass for (.+)\))?")]
    private static partial Regex RebuiltOne();

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static void Log(string line) => Console.WriteLine($"[rebuild {DateTime.Now:HH:mm:ss}] {line}");
}
