using System.Diagnostics.Metrics;
using Marten;
using Throughput.Capacity;
using Throughput.Finance;
using Throughput.Invoicing;

namespace Throughput.Hosting;

/// <summary>
/// Gauges of the platform's state (meter "Throughput.Platform"), exported beside the metering counters and read from the
/// database when scraped: how far the read models are behind the log, in events and seconds, and per pool the PTUs sold
/// and the weighted tokens served this month. A scrape costs four index lookups and two reads of one row per pool,
/// whatever the tenants.
/// </summary>
public sealed class PlatformGauges : IDisposable
{
    public const string MeterName = "Throughput.Platform";

    static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(5);

    readonly Meter _meter = new(MeterName);
    readonly IDocumentStore _store;
    readonly ILogger<PlatformGauges> _log;

    public PlatformGauges(IDocumentStore store, TimeProvider clock, ILogger<PlatformGauges> log)
    {
        (_store, _log) = (store, log);
        _meter.CreateObservableGauge("throughput_projection_lag_events",
            () => Read("projection lag", async ct => (IEnumerable<Measurement<long>>)[new(await Drafts.BehindAsync(store, ct))]),
            unit: null, "Events in the log the read models have not folded yet");
        _meter.CreateObservableGauge("throughput_projection_lag_seconds",
            () => Read("projection lag", async ct => (IEnumerable<Measurement<double>>)[new(await Drafts.BehindSecondsAsync(store, ct))]),
            unit: null, "Seconds the oldest event the read models have not folded has been in the log");
        _meter.CreateObservableGauge("throughput_pool_sold_ptu",
            () => Read("sold PTUs", ct => SoldAsync(store, ct)),
            unit: null, "PTUs sold in a model's region now");
        _meter.CreateObservableGauge("throughput_pool_month_served_weighted_tokens",
            () => Read("served tokens", ct => ServedAsync(store, BillingMonth.Of(clock.GetUtcNow()), ct)),
            unit: null, "Weighted tokens a model's region served this month (UTC) to date, by record time, as the read models have counted them");
    }

    static async Task<IEnumerable<Measurement<double>>> SoldAsync(IDocumentStore store, CancellationToken ct)
    {
        await using var session = store.QuerySession();
        var pools = await session.Query<CapacityPool>().ToListAsync(ct);
        // A phase-split region's prompt and generation pools each hold all of a deployment's PTUs: the region sold the most either holds.
        return pools.GroupBy(p => (p.Model, p.Region))
            .Select(g => new Measurement<double>((double)g.Max(p => p.Sold), Labels(g.Key.Model, g.Key.Region)))
            .ToList();
    }

    static async Task<IEnumerable<Measurement<double>>> ServedAsync(IDocumentStore store, BillingMonth month, CancellationToken ct)
    {
        await using var session = store.QuerySession();
        var months = await session.Query<PoolUtilization>().Where(m => m.Period == month.Index).ToListAsync(ct);
        // Pool ids are pool:{model}:{region}, and a region has no colon.
        return months.Select(m => (Pool: m.PoolId["pool:".Length..], m.Served))
            .Select(m => new Measurement<double>((double)m.Served, Labels(m.Pool[..m.Pool.LastIndexOf(':')], m.Pool[(m.Pool.LastIndexOf(':') + 1)..])))
            .ToList();
    }

    static KeyValuePair<string, object?>[] Labels(string model, string region) => [new("model", model), new("region", region)];

    /// <summary>
    /// The exporter collects synchronously: the read waits here, bounded. A failed read leaves the series out of this
    /// scrape (a gap on the dashboard) rather than failing the scrape of every other series.
    /// </summary>
    IEnumerable<Measurement<T>> Read<T>(string what, Func<CancellationToken, Task<IEnumerable<Measurement<T>>>> read) where T : struct
    {
        try
        {
            using var timeout = new CancellationTokenSource(ReadTimeout);
            return Task.Run(() => read(timeout.Token), timeout.Token).GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            _log.LogWarning(e, "Reading {Gauge} for /metrics failed; the series is left out of this scrape", what);
            return [];
        }
    }

    public void Dispose() => _meter.Dispose();
}
