using System.Globalization;
using Throughput.Flywheel.Batching;

namespace Throughput.Flywheel.Report;

/// <summary>The demo's table: one line per scheduler and customer per window.</summary>
public static class WindowTable
{
    public static string Legend =>
        """
        columns: fleet (fly = Flywheel, whole = whole-prompt batching); PTU purchased; prompt and generated tokens served in the window;
        weighted = prompt − cached × deduction + output weight × generated, the unit PTUs are sold in; purchased = what the PTUs allow in
        the window; ratio = weighted ÷ purchased; util = the platform's metered bucket level at the window's end; 429s = requests admission
        refused for now (the customer offers more than it bought); thr = throttles; ttft = mean time to first token from admission;
        ms/tok = mean time per output token; queued = requests waiting for admission. The first window ("burst") is the start: the
        serving node spends the share of each burst allowance its fleet has unsold, and long requests are still on their way to full
        speed, so its ratio is not the purchased rate; the steady state is read from the windows after it.
        """;

    public static string Header =>
        $"{"window",-11} {"fleet",-5} {"customer",-16} {"PTU",5} {"prompt",10} {"generated",10} {"weighted",11} {"purchased",11} {"ratio",6} {"util",5} {"429s",5} {"thr",3} {"ttft",6} {"ms/tok",6} {"queued",6}";

    public static string Line(WindowRow row, decimal ptu, Scheduling scheduling) => string.Create(CultureInfo.InvariantCulture,
        $"{(row.Index == 0 ? "burst " + Clock(row.To) : Span(row.From, row.To)),-11} {FleetLabel(scheduling),-5} {Fit(row.Name, 16),-16} {ptu,5:0.#} {row.Prompt,10:N0} {row.Generated,10:N0} {row.Weighted,11:N0} {row.Purchased,11:N0} {row.Ratio,6:0.000} {(row.Utilization is { } u ? $"{u:P0}" : "-"),5} {row.Refusals,5} {row.Throttles,3} {row.TtftMs,6:0} {row.TpotMs,6:0.0} {(row.Queued?.ToString(CultureInfo.InvariantCulture) ?? "-"),6}");

    public static string FleetLabel(Scheduling scheduling) => scheduling == Scheduling.Flywheel ? "fly" : "whole";

    public static string Span(TimeSpan from, TimeSpan to) => $"{Clock(from)}-{Clock(to)}";

    public static string Clock(TimeSpan at) => string.Create(CultureInfo.InvariantCulture, $"{(int)at.TotalMinutes}:{at.Seconds:D2}");

    static string Fit(string text, int width) => text.Length <= width ? text : text[..width];
}
