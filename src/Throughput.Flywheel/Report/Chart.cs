using System.Globalization;
using System.Net;
using System.Text;
using Throughput.Flywheel.Batching;

namespace Throughput.Flywheel.Report;

/// <summary>
/// The demo's pictures, one self-contained HTML page of inline SVG: per fleet and customer a panel of the prompt and the
/// generated share of its served weighted tokens per minute against its purchased rate, the burst clipped and marked, the
/// resize marked; then per fleet a strip of a few seconds of one GPU's iterations, each a column as wide as it took, stacked
/// with a block per request coloured per request.
/// </summary>
public static class Chart
{
    const int PanelWidth = 460, PanelHeight = 200, Left = 64, Right = 12, Top = 28, Bottom = 30;
    const string PromptColor = "#4e79a7", GeneratedColor = "#f28e2b";

    public static string Page(string title, IReadOnlyList<(string Name, Tally Tally)> fleets, DateTimeOffset end, TimeSpan step, DateTimeOffset? resizedAt)
    {
        var html = new StringBuilder();
        html.Append(CultureInfo.InvariantCulture, $"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{Encode(title)}</title></head><body style=\"font-family:sans-serif\">");
        html.Append(CultureInfo.InvariantCulture, $"<h2>{Encode(title)}</h2>");
        html.Append(string.Create(CultureInfo.InvariantCulture,
            $"<p style=\"font-size:13px;color:#444\">Served weighted tokens per minute (steps of {step.TotalSeconds:0.#} s, counted when the GPU processed them): ") +
            $"<span style=\"color:{PromptColor}\">■ prompt</span> (prompt − cached) and <span style=\"color:{GeneratedColor}\">■ generated</span> (output weight × generated), " +
            "stacked; dashed: the purchased rate. Above 1.3× the purchased rate (the burst allowance, or a fleet catching up) the panel is clipped and marked ▲. The grey line marks the resize.</p>");
        html.Append("<div style=\"display:flex;gap:24px;flex-wrap:wrap\">");
        foreach (var (name, tally) in fleets)
        {
            html.Append(CultureInfo.InvariantCulture, $"<div><h3>{Encode(name)}</h3>");
            foreach (var track in tally.Tracks) html.Append(Panel(track, tally, end, step, resizedAt));
            html.Append("</div>");
        }
        html.Append("</div><h3>Two seconds of one GPU's iterations</h3><p style=\"font-size:13px;color:#444\">Each column is one iteration, as wide as it took; " +
                    "each block one request's tokens in it (a prompt chunk, a generated token, or both), one colour per request; each strip has its own token scale. Flywheel's columns are alike; " +
                    "batching whole prompts makes a long column whenever a prompt arrives, and every request decoding beside it waits that long for its next token.</p>");
        foreach (var (name, tally) in fleets) html.Append(Strip(name, tally));
        html.Append("</body></html>");
        return html.ToString();
    }

    static string Panel(Track track, Tally tally, DateTimeOffset end, TimeSpan step, DateTimeOffset? resizedAt)
    {
        var slotsPerStep = Math.Max(1, (int)Math.Round(step / tally.Resolution));
        var stepMinutes = tally.Resolution.TotalMinutes * slotsPerStep;
        var steps = Math.Max(1, (int)Math.Floor((end - tally.Start) / (tally.Resolution * slotsPerStep)));
        var prompt = new double[steps];
        var generated = new double[steps];
        for (var i = 0; i < steps; i++)
        {
            for (var k = i * slotsPerStep; k < (i + 1) * slotsPerStep && k < track.Slots.Count; k++)
            {
                var slot = track.Slots[k];
                generated[i] += track.OutputWeight * slot.Generated / stepMinutes;
                prompt[i] += (slot.Weighted - track.OutputWeight * slot.Generated) / stepMinutes;
            }
        }
        var totalMinutes = steps * stepMinutes;
        var yMax = 1.3 * Math.Max(1, track.Rates.Select(r => (double)r.TokensPerMinute).DefaultIfEmpty(1).Max());
        double X(double minutes) => Left + minutes / totalMinutes * (PanelWidth - Left - Right);
        double Y(double value) => PanelHeight - Bottom - Math.Min(value, yMax) / yMax * (PanelHeight - Top - Bottom);

        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{PanelWidth}\" height=\"{PanelHeight}\" font-size=\"11\" style=\"display:block\">");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"16\" font-size=\"13\">{Encode(track.Name)}</text>");
        for (var i = 0; i <= 4; i++)
        {
            var value = yMax * i / 4;
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{Left}\" x2=\"{PanelWidth - Right}\" y1=\"{Y(value):F1}\" y2=\"{Y(value):F1}\" stroke=\"#eee\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left - 6}\" y=\"{Y(value) + 4:F1}\" text-anchor=\"end\">{Compact(value)}</text>");
        }
        var xTick = totalMinutes <= 2 ? 0.25 : totalMinutes <= 10 ? 1 : 5;
        for (var m = 0d; m <= totalMinutes + 1e-9; m += xTick)
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(m):F1}\" y=\"{PanelHeight - Bottom + 14}\" text-anchor=\"middle\">{m:0.##} min</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<polygon fill=\"{GeneratedColor}\" points=\"{Area(generated, new double[steps], stepMinutes, X, Y)}\"/>");
        svg.Append(CultureInfo.InvariantCulture, $"<polygon fill=\"{PromptColor}\" points=\"{Area(prompt, generated, stepMinutes, X, Y)}\"/>");
        for (var i = 0; i < steps; i++)
        {
            if (prompt[i] + generated[i] > yMax)
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{X((i + 0.5) * stepMinutes):F1}\" y=\"{Top - 2}\" text-anchor=\"middle\" fill=\"#c00\">▲</text>");
        }
        if (prompt.Zip(generated).Any(p => p.First + p.Second > yMax))
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{PanelWidth - Right}\" y=\"16\" text-anchor=\"end\" fill=\"#c00\">▲ above 1.3× the purchased rate, clipped</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"#222\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\" points=\"{Purchased(track, tally, end, X, Y)}\"/>");
        if (resizedAt is { } resized && track.Rates.Count > 1)
        {
            var x = X((resized - tally.Start).TotalMinutes);
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{x:F1}\" x2=\"{x:F1}\" y1=\"{Top}\" y2=\"{PanelHeight - Bottom}\" stroke=\"#888\" stroke-width=\"1.5\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{x + 4:F1}\" y=\"{Top + 12}\" fill=\"#555\">resize</text>");
        }
        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{Left}\" y=\"{Top}\" width=\"{PanelWidth - Left - Right}\" height=\"{PanelHeight - Top - Bottom}\" fill=\"none\" stroke=\"#999\"/>");
        svg.Append("</svg>");
        return svg.ToString();
    }

    /// <summary>Each strip has its own token scale (a whole-prompt column holds thousands, a Flywheel one its budget); time is what to compare.</summary>
    static string Strip(string name, Tally tally)
    {
        const int width = 940, height = 160, left = 64, top = 24, bottom = 24;
        var iterations = tally.Strip;
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-size=\"11\" style=\"display:block\">");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left}\" y=\"15\" font-size=\"13\">{Encode(name)}</text>");
        if (iterations.Count > 0)
        {
            var tallest = iterations.Max(i => i.Iteration.TokensUsed);
            var from = iterations[0].Iteration.Start;
            var span = (iterations[^1].Iteration.End - from).TotalMilliseconds;
            double X(DateTimeOffset at) => left + (at - from).TotalMilliseconds / span * (width - left - 10);
            double H(int tokens) => (double)tokens / tallest * (height - top - bottom);
            foreach (var (_, iteration) in iterations)
            {
                var x = X(iteration.Start);
                var w = Math.Max(0.5, X(iteration.End) - x - 0.5);
                double y = height - bottom;
                foreach (var part in iteration.Parts)
                {
                    var h = H(part.PromptTokens + part.GeneratedTokens);
                    y -= h;
                    svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{x:F1}\" y=\"{y:F2}\" width=\"{w:F1}\" height=\"{h:F2}\" fill=\"hsl({Hue(part.RequestId)},60%,55%)\"/>");
                }
            }
            for (var ms = 0; ms <= (int)span; ms += 250)
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(from.AddMilliseconds(ms)):F1}\" y=\"{height - 8}\" text-anchor=\"middle\">{ms} ms</text>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left - 6}\" y=\"{top + 8}\" text-anchor=\"end\">{tallest:N0}</text><text x=\"{left - 6}\" y=\"{height - bottom}\" text-anchor=\"end\">0</text>");
            svg.Append(CultureInfo.InvariantCulture, $"<text transform=\"translate(12 {(top + height - bottom) / 2}) rotate(-90)\" text-anchor=\"middle\">tokens</text>");
        }
        svg.Append("</svg>");
        return svg.ToString();
    }

    static int Hue(string requestId) => (int)((uint)StringComparer.Ordinal.GetHashCode(requestId) % 360);

    static string Area(double[] values, double[] below, double stepMinutes, Func<double, double> x, Func<double, double> y)
    {
        var upper = values.Select((v, i) => string.Create(CultureInfo.InvariantCulture, $"{x((i + 0.5) * stepMinutes):F1},{y(v + below[i]):F1}"));
        var lower = below.Select((v, i) => string.Create(CultureInfo.InvariantCulture, $"{x((i + 0.5) * stepMinutes):F1},{y(v):F1}")).Reverse();
        return string.Join(' ', upper.Concat(lower));
    }

    static string Purchased(Track track, Tally tally, DateTimeOffset end, Func<double, double> x, Func<double, double> y)
    {
        var points = new List<string>();
        for (var i = 0; i < track.Rates.Count; i++)
        {
            var from = Math.Max(0, (track.Rates[i].At - tally.Start).TotalMinutes);
            var to = i + 1 < track.Rates.Count ? (track.Rates[i + 1].At - tally.Start).TotalMinutes : (end - tally.Start).TotalMinutes;
            points.Add(string.Create(CultureInfo.InvariantCulture, $"{x(from):F1},{y(track.Rates[i].TokensPerMinute):F1}"));
            points.Add(string.Create(CultureInfo.InvariantCulture, $"{x(to):F1},{y(track.Rates[i].TokensPerMinute):F1}"));
        }
        return string.Join(' ', points);
    }

    static string Encode(string text) => WebUtility.HtmlEncode(text);

    static string Compact(double value) => value switch
    {
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{value / 1_000_000:0.##}M"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{value / 1_000:0.#}k"),
        _ => value.ToString("0", CultureInfo.InvariantCulture),
    };
}
