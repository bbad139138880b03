namespace Throughput.Benchmarks.Harness;

/// <summary>
/// docs/benchmarks.md keeps the last report of <c>all</c> in a generated section between two markers; the prose around it
/// is written by hand and left alone.
/// </summary>
public static class BenchmarksDoc
{
    public const string Start = "<!-- benchmark-report:start (written by `bash infra/bench.sh all`; edits inside are overwritten) -->";
    public const string End = "<!-- benchmark-report:end -->";

    public static string Path => System.IO.Path.Combine(Services.RepositoryRoot(), "docs", "benchmarks.md");

    /// <summary>The document with the section between the markers replaced, or appended with its markers when there is none yet.</summary>
    public static string WithReport(string document, string report)
    {
        var section = $"{Start}\n{report.TrimEnd()}\n{End}";
        var start = document.IndexOf(Start, StringComparison.Ordinal);
        var end = document.IndexOf(End, StringComparison.Ordinal);
        if (start < 0 || end < start) return document.TrimEnd() + "\n\n" + section + "\n";
        return document[..start] + section + document[(end + End.Length)..];
    }

    public static async Task WriteAsync(string report, CancellationToken ct)
    {
        var document = File.Exists(Path) ? await File.ReadAllTextAsync(Path, ct) : "# Benchmarks\n";
        await File.WriteAllTextAsync(Path, WithReport(document, report), ct);
    }
}
