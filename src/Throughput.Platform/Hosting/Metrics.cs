using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;
using Throughput.Access;
using Throughput.Metering;

namespace Throughput.Hosting;

/// <summary>
/// Prometheus text exposition of the platform's own meters at <c>/metrics</c> (operator key, like every other call):
/// counters as totals, histograms as _sum and _count. Small on purpose; an OpenTelemetry exporter can replace it.
/// </summary>
public sealed class MetricsExposition : IDisposable
{
    static readonly string[] Meters = [MeteringMetrics.MeterName];

    readonly MeterListener _listener = new();
    readonly ConcurrentDictionary<string, double> _values = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, string> _help = new(StringComparer.Ordinal);

    public MetricsExposition()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (Meters.Contains(instrument.Meter.Name)) listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((i, value, tags, _) => Record(i, value, tags));
        _listener.SetMeasurementEventCallback<double>((i, value, tags, _) => Record(i, value, tags));
        _listener.Start();
    }

    void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var labels = new StringBuilder();
        foreach (var tag in tags)
            labels.Append(labels.Length == 0 ? "{" : ",").Append(tag.Key).Append("=\"").Append(tag.Value).Append('"');
        if (labels.Length > 0) labels.Append('}');
        _help.TryAdd(instrument.Name, instrument.Description ?? instrument.Name);
        if (instrument is Histogram<double>)
        {
            _values.AddOrUpdate($"{instrument.Name}_sum{labels}", value, (_, v) => v + value);
            _values.AddOrUpdate($"{instrument.Name}_count{labels}", 1, (_, v) => v + 1);
        }
        else
        {
            _values.AddOrUpdate($"{instrument.Name}_total{labels}", value, (_, v) => v + value);
        }
    }

    public string Render()
    {
        var text = new StringBuilder();
        foreach (var (name, help) in _help.OrderBy(h => h.Key, StringComparer.Ordinal))
        {
            text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            foreach (var (series, value) in _values.Where(v => v.Key.StartsWith(name + "_", StringComparison.Ordinal)).OrderBy(v => v.Key, StringComparer.Ordinal))
                text.Append(series).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        return text.ToString();
    }

    public void Dispose() => _listener.Dispose();
}

public static class MetricsEndpoint
{
    public static IEndpointRouteBuilder MapMetrics(this IEndpointRouteBuilder app)
    {
        // Listen from start-up on, not from the first scrape.
        var metrics = app.ServiceProvider.GetRequiredService<MetricsExposition>();
        app.MapGet("/metrics", () => TypedResults.Text(metrics.Render(), "text/plain; version=0.0.4"))
            .RequireAuthorization(Policies.Operator).ExcludeFromDescription();
        return app;
    }
}
