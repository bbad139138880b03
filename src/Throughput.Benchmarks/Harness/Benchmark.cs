namespace Throughput.Benchmarks.Harness;

/// <summary>One end-to-end benchmark, run as a subcommand: <c>Throughput.Benchmarks {Name} [--option value …]</c>.</summary>
public interface IBenchmark
{
    string Name { get; }

    string Summary { get; }

    /// <summary>Option name (without the dashes) and what it does, default included; for the usage text.</summary>
    IReadOnlyList<(string Option, string Meaning)> Options { get; }

    Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken);
}

/// <summary>A measured value, with the target it is held against when there is one.</summary>
public sealed record Figure(string Name, string Value, string? Target = null, bool? Met = null);

/// <summary>What a benchmark measured, and the conditions it measured them under (settings, machine, concurrent load).</summary>
public sealed record BenchmarkReport(string Benchmark, IReadOnlyList<Figure> Figures, IReadOnlyList<string> Conditions)
{
    /// <summary>Markdown printed and written after the figures, for what a table of figures cannot show (a drill's timeline).</summary>
    public string? Details { get; init; }

    public bool TargetsMet => Figures.All(f => f.Met is not false);
}
