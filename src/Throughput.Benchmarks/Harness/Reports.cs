using System.Text;

namespace Throughput.Benchmarks.Harness;

/// <summary>Prints reports for a person at the console and writes them as one Markdown table for docs/benchmarks.md or a CI artifact.</summary>
public static class Reports
{
    public static void Print(BenchmarkReport report, TextWriter output)
    {
        output.WriteLine();
        output.WriteLine($"== {report.Benchmark} ==");
        var width = report.Figures.Max(f => f.Name.Length);
        var valueWidth = report.Figures.Where(f => f.Value.Length <= 24).Select(f => f.Value.Length).DefaultIfEmpty(0).Max();
        foreach (var figure in report.Figures)
        {
            var target = figure.Target is null ? "" : $"   target {figure.Target}: {(figure.Met == true ? "met" : "NOT met")}";
            output.WriteLine($"{figure.Name.PadRight(width)}  {figure.Value.PadLeft(valueWidth)}{target}");
        }
        foreach (var condition in report.Conditions) output.WriteLine($"  · {condition}");
        if (report.Details is not null) output.Write($"\n{report.Details}");
    }

    public static string Markdown(IReadOnlyList<BenchmarkReport> reports)
    {
        var md = new StringBuilder();
        md.AppendLine("| benchmark | figure | value | target | met |");
        md.AppendLine("|---|---|---:|---|---|");
        foreach (var report in reports)
        {
            foreach (var f in report.Figures)
                md.AppendLine($"| {report.Benchmark} | {f.Name} | {f.Value} | {f.Target ?? ""} | {f.Met switch { true => "yes", false => "**no**", null => "" }} |");
        }
        foreach (var report in reports)
        {
            md.AppendLine();
            md.AppendLine($"{report.Benchmark}: " + string.Join("; ", report.Conditions) + ".");
            if (report.Details is not null) md.AppendLine().Append(report.Details);
        }
        return md.ToString();
    }
}
