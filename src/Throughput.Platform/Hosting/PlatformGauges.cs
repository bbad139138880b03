using System.Diagnostics.Metrics;
using Marten;
using Throughput.Capacity;
using Throughput.Finance;
using Throughput.Invoicing;

namespace Throughput.Hosting;

/// <summary>
/// Gauges of the platform's state (meter "Throughput.Platform"), exported beside the metering counters: how far the read
/// models are behind the log, in events and seconds, and per pool the PTUs sold and the weighted tokens served this month.
/// Read from the database every <see cref="Every"/> on a timer, never inside a scrape: an exporter collects synchronously,
/// and a scrape that waited on the database (or on another host's in the same process, as in the tests) held every other
/// series back with it. A reading costs four index lookups and two reads of one row per pool, whatever the tenants.
/// </summary>
public sealed class PlatformGauges : BackgroundService
{
    public const string MeterName = "Throughput.Platform";

    public const string SoldPtu = "throughput_pool_sold_ptu";
    public const string MonthServed = "throughput_pool_month_served_weighted_tokens";

    /// <summary>
    /// The (model, region) series each pool gauge keeps. OpenTelemetry's default of 2,000 per metric folded every pool past
    /// the 2,000th into one unlabelled overflow series. The exporter allocates every point up front, so the limit is not unbounded.
    /// </summary>
    public const int MostPools = 20_000;

    static readonly TimeSpan Every = TimeSpan.FromSeconds(5);

    sealed record Reading(long LagEvents, double LagSeconds, IReadOnlyList<Measurement<double>> Sold, IReadOnlyList<Measurement<double>> Served);

    readonly Meter _meter = new(MeterName);
    readonly IDocumentStore _store;
    readonly TimeProvider _clock;
    readonly ILogger<PlatformGauges> _log;
    volatile Reading? _last;

    public PlatformGauges(IDocumentStore store, TimeProvider clock, ILogger<PlatformGauges> log)
    {
        (_store, _clock, _log) = (store, clock, log);
        _meter.CreateObservableGauge("throughput_projection_lag_events",
            () => _last is { } r ? [new Measurement<long>(r.LagEvents)] : Array.Empty<Measurement<long>>(),
            unit: null, "Events in the log the read models have not folded yet");
        _meter.CreateObservableGauge("throughput_projection_lag_seconds",
            () => _last is { } r ? [new Measurement<double>(r.LagSeconds)] : Array.Empty<Measurement<double>>(),
            unit: null, "Seconds the oldest event the read models have not folded has been in the log");
        _meter.CreateObservableGauge(SoldPtu, () => _last?.Sold ?? [],
            unit: null, "PTUs sold in a model's region now");
        _meter.CreateObservableGauge(MonthServed, () => _last?.Served ?? [],
            unit: null, "Weighted tokens a model's region served this month (UTC) to date, by record time, as the read models have counted them");
    }

    /// <summary>
    /// Started with the host, after the schema is in place (reading before would race its creation). The wall clock, not the
    /// platform's: a demo's or a test's standing clock must not stop the readings.
    /// </summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var every = new PeriodicTimer(Every, TimeProvider.System);
        do await ReadAsync(stoppingToken);
        while (await every.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>A failed reading keeps the last (the dashboard shows it unchanged) and is logged.</summary>
    async Task ReadAsync(CancellationToken stoppingToken)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            timeout.CancelAfter(Every);
            var ct = timeout.Token;
            _last = new Reading(await Drafts.BehindAsync(_store, ct), await Drafts.BehindSecondsAsync(_store, ct),
                await SoldAsync(_store, ct), await ServedAsync(_store, BillingMonth.Of(_clock.GetUtcNow()), ct));
        }
        catch (Exception e) when (e is not OutOfMemoryException && !stoppingToken.IsCancellationRequested)
        {
            _log.LogWarning(e, "Reading the platform gauges failed; /metrics keeps the last reading");
        }
    }

    static async Task<IReadOnlyList<Measurement<double>>> SoldAsync(IDocumentStore store, CancellationToken ct)
    {
        await using var session = store.QuerySession();
        var pools = await session.Query<CapacityPool>().ToListAsync(ct);
        // A phase-split region's prompt and generation pools each hold all of a deployment's PTUs: the region sold the most either holds.
        return pools.GroupBy(p => (p.Model, p.Region))
            .Select(g => new Measurement<double>((double)g.Max(p => p.Sold), Labels(g.Key.Model, g.Key.Region)))
            .ToList();
    }

    static async Task<IReadOnlyList<Measurement<double>>> ServedAsync(IDocumentStore store, BillingMonth month, CancellationToken ct)
    {
        await using var session = store.QuerySession();
        var months = await session.Query<PoolUtilization>().Where(m => m.Period == month.Index).ToListAsync(ct);
        // Pool ids are pool:{model}:{region}[:{phase}]; a phase-split region counts, like sold PTUs, the most either of its pools holds.
        return months.Select(m => (Pool: m.PoolId.Split(':'), m.Served)).Where(m => m.Pool.Length >= 3)
            .GroupBy(m => (Model: m.Pool[1], Region: m.Pool[2]))
            .Select(g => new Measurement<double>((double)g.Max(m => m.Served), Labels(g.Key.Model, g.Key.Region)))
            .ToList();
    }

    static KeyValuePair<string, object?>[] Labels(string model, string region) => [new("model", model), new("region", region)];

    public override void Dispose()
    {
        _meter.Dispose();
        base.Dispose();
    }
}
