using System.Globalization;
using System.Net;
using System.Text;

namespace Throughput.Flywheel.Report;

/// <summary>A self-contained HTML page with an inline SVG line chart: served weighted tokens per minute per customer over time, with each purchased rate dashed.</summary>
public static class Chart
{
    static readonly string[] Colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    const int Width = 960, Height = 480, Left = 90, Right = 190, Top = 40, Bottom = 50;

    public static string Html(string title, Tally tally, DateTimeOffset end, TimeSpan step)
    {
        var tracks = tally.Tracks;
        var slotsPerStep = Math.Max(1, (int)Math.Round(step / tally.Resolution));
        var stepMinutes = tally.Resolution.TotalMinutes * slotsPerStep;
        var steps = Math.Max(1, (int)Math.Floor((end - tally.Start) / (tally.Resolution * slotsPerStep)));
        var series = tracks.Select(t => Enumerable.Range(0, steps)
            .Select(i => Enumerable.Range(i * slotsPerStep, slotsPerStep).Where(k => k < t.Slots.Count).Sum(k => t.Slots[k].Weighted) / stepMinutes)
            .ToArray()).ToArray();
        var totalMinutes = steps * stepMinutes;
        var yMax = NiceCeiling(Math.Max(1, Math.Max(series.SelectMany(s => s).DefaultIfEmpty(0).Max(), tracks.SelectMany(t => t.Rates).Select(r => (double)r.TokensPerMinute).DefaultIfEmpty(0).Max())));
        double X(double minutes) => Left + minutes / totalMinutes * (Width - Left - Right);
        double Y(double value) => Height - Bottom - value / yMax * (Height - Top - Bottom);

        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"22\" font-size=\"15\">{WebUtility.HtmlEncode(title)}</text>");
        for (var i = 0; i <= 5; i++)
        {
            var value = yMax * i / 5;
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{Left}\" x2=\"{Width - Right}\" y1=\"{Y(value):F1}\" y2=\"{Y(value):F1}\" stroke=\"#ddd\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left - 8}\" y=\"{Y(value) + 4:F1}\" text-anchor=\"end\">{Compact(value)}</text>");
        }
        var xTick = totalMinutes <= 2 ? 0.25 : totalMinutes <= 10 ? 1 : 5;
        for (var m = 0d; m <= totalMinutes + 1e-9; m += xTick)
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(m):F1}\" y=\"{Height - Bottom + 18}\" text-anchor=\"middle\">{m:0.##}</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{(Left + Width - Right) / 2}\" y=\"{Height - 12}\" text-anchor=\"middle\">minutes</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<text transform=\"translate(18 {(Top + Height - Bottom) / 2}) rotate(-90)\" text-anchor=\"middle\">weighted tokens per minute</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{Left}\" y=\"{Top}\" width=\"{Width - Left - Right}\" height=\"{Height - Top - Bottom}\" fill=\"none\" stroke=\"#999\"/>");

        for (var t = 0; t < tracks.Count; t++)
        {
            var color = Colors[t % Colors.Length];
            var served = string.Join(' ', series[t].Select((v, i) => string.Create(CultureInfo.InvariantCulture, $"{X((i + 1) * stepMinutes):F1},{Y(v):F1}")));
            svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{served}\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\" points=\"{Purchased(tracks[t], tally, end, X, Y)}\"/>");
            var legendY = Top + 10 + t * 40;
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{Width - Right + 12}\" x2=\"{Width - Right + 40}\" y1=\"{legendY}\" y2=\"{legendY}\" stroke=\"{color}\" stroke-width=\"2\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Width - Right + 46}\" y=\"{legendY + 4}\">{WebUtility.HtmlEncode(tracks[t].Name)}</text>");
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{Width - Right + 12}\" x2=\"{Width - Right + 40}\" y1=\"{legendY + 16}\" y2=\"{legendY + 16}\" stroke=\"{color}\" stroke-dasharray=\"6 4\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Width - Right + 46}\" y=\"{legendY + 20}\" fill=\"#555\">purchased</text>");
        }
        svg.Append("</svg>");
        return $"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{WebUtility.HtmlEncode(title)}</title></head><body>{svg}" +
               $"<p style=\"font-family:sans-serif;font-size:12px;color:#555\">Served weighted tokens per minute, in steps of {step.TotalSeconds:0.#} s, counted when the GPU processed them: (prompt − cached) + output weight × generated. Dashed: the purchased rate as the serving node knew it.</p></body></html>";
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

    static double NiceCeiling(double value)
    {
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(value)));
        foreach (var factor in new[] { 1, 2, 2.5, 5, 10 })
        {
            if (factor * magnitude >= value) return factor * magnitude;
        }
        return 10 * magnitude;
    }

    static string Compact(double value) => value switch
    {
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{value / 1_000_000:0.##}M"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{value / 1_000:0.#}k"),
        _ => value.ToString("0", CultureInfo.InvariantCulture),
    };
}
