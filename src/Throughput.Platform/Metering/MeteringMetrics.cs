using System.Diagnostics.Metrics;

namespace Throughput.Metering;

/// <summary>Ingestion counters (System.Diagnostics.Metrics, meter "Throughput.Metering"), exported at /metrics.</summary>
public sealed class MeteringMetrics : IDisposable
{
    public const string MeterName = "Throughput.Metering";

    /// <summary>The consumer's spans: one per consumer batch, linked to the publishes it folds.</summary>
    public static readonly System.Diagnostics.ActivitySource Tracing = new(MeterName);

    readonly System.Diagnostics.Metrics.Meter _meter = new(MeterName);
    readonly Counter<long> _messages;
    readonly Counter<long> _records;
    readonly Counter<long> _duplicates;
    readonly Counter<long> _throttles;
    readonly Counter<long> _quarantined;
    readonly Counter<long> _released;
    readonly Histogram<double> _commit;

    public MeteringMetrics()
    {
        _messages = _meter.CreateCounter<long>("throughput_metering_messages", description: "Metering messages consumed");
        _records = _meter.CreateCounter<long>("throughput_metering_records", description: "Metering records counted into usage");
        _duplicates = _meter.CreateCounter<long>("throughput_metering_duplicate_batches", description: "Batches dropped as already counted");
        _throttles = _meter.CreateCounter<long>("throughput_deployments_throttled", description: "Deployments throttled");
        _quarantined = _meter.CreateCounter<long>("throughput_metering_quarantined", description: "Messages or records quarantined, by reason");
        _released = _meter.CreateCounter<long>("throughput_metering_deliveries_released", description: "Deliveries in flight on a lost broker connection, cancelled so their partition reconnects (redelivered by the broker)");
        // No unit: the name says it, and the Prometheus exporter would append "_milliseconds" to the series operators scrape.
        _commit = _meter.CreateHistogram<double>("throughput_metering_commit_ms", unit: null, "Time to fold and commit one consumer batch, in milliseconds");
    }

    public void Committed(int messages, long records, long duplicates, long throttles, IReadOnlyList<QuarantinedMetering> quarantined, TimeSpan took)
    {
        _messages.Add(messages);
        _records.Add(records);
        _duplicates.Add(duplicates);
        _throttles.Add(throttles);
        foreach (var reason in quarantined.GroupBy(q => q.Reason))
            _quarantined.Add(reason.Count(), new KeyValuePair<string, object?>("reason", reason.Key.ToString()));
        _commit.Record(took.TotalMilliseconds);
    }

    public void Quarantined(QuarantineReason reason) => _quarantined.Add(1, new KeyValuePair<string, object?>("reason", reason.ToString()));

    public void ReleasedOnLostConnection(int deliveries) => _released.Add(deliveries);

    public void Dispose() => _meter.Dispose();
}
