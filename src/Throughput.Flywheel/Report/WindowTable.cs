using System.Globalization;

namespace Throughput.Flywheel.Report;

/// <summary>The demo's table: one line per customer per window.</summary>
public static class WindowTable
{
    public static string Header =>
        $"{"window",-11} {"customer",-16} {"PTU",5} {"prompt",10} {"generated",10} {"weighted",11} {"purchased",11} {"ratio",6} {"util",5} {"429s",5} {"thr",3} {"ttft ms",7} {"ms/tok",6} {"queued",6}";

    public static string Line(WindowRow row, decimal ptu) => string.Create(CultureInfo.InvariantCulture,
        $"{Span(row.From, row.To),-11} {Fit(row.Name, 16),-16} {ptu,5:0.#} {row.Prompt,10:N0} {row.Generated,10:N0} {row.Weighted,11:N0} {row.Purchased,11:N0} {row.Ratio,6:0.000} {(row.Utilization is { } u ? $"{u:P0}" : "-"),5} {row.Refusals,5} {row.Throttles,3} {row.TtftMs,7:0} {row.TpotMs,6:0.0} {(row.Queued?.ToString(CultureInfo.InvariantCulture) ?? "-"),6}");

    public static string Span(TimeSpan from, TimeSpan to) => $"{Clock(from)}-{Clock(to)}";

    public static string Clock(TimeSpan at) => string.Create(CultureInfo.InvariantCulture, $"{(int)at.TotalMinutes}:{at.Seconds:D2}");

    static string Fit(string text, int width) => text.Length <= width ? text : text[..width];
}
