using System.Diagnostics;
using System.Globalization;
using JasperFx.Events.Daemon;
using Marten;
using Npgsql;
using Throughput.Benchmarks.Harness;
using Throughput.Configuration;
using Throughput.Hosting;
using Throughput.Invoicing;
using Throughput.Store;
using Throughput.Tenants;

namespace Throughput.Benchmarks.Drills;

/// <summary>
/// How long the async daemon holds the read models behind a sequence gap, under Marten's stale-gap settings (#22 point 3).
/// Each case: a scratch schema with the platform's store configuration and its daemon running, one tenant appended and
/// projected, then a gap (a sequence number taken by a transaction that rolls back, or that stays open), then another
/// tenant appended; measured is its commit → the read models' progress passing it.
/// </summary>
public sealed class StaleGapDrill : IBenchmark
{
    static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(50);

    public string Name => "stale-gaps";

    public string Summary => "how long a sequence gap holds the read models with and without SkipStaleGapsDespiteLiveTransactionsAfter";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("schema", "scratch schema, dropped after each case (bench_stale_gaps)"),
        ("timeout", "seconds to wait for the read models past a gap; an open transaction stays open this long (60)"),
    ];

    sealed record Settings(string Name, TimeSpan? SkipDespiteLive, TimeSpan? StaleThreshold);

    enum Gap { RolledBack, HeldOpen, OtherOpenTransaction }

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var schema = options.Text("schema", "bench_stale_gaps");
        var timeout = options.Seconds("timeout", TimeSpan.FromSeconds(60));
        options.EnsureAllRead();
        Settings[] settings =
        [
            new("Marten's defaults (no skip despite live transactions, stale threshold 3 s)", null, null),
            new("the platform's: skip despite live transactions after 15 s", TimeSpan.FromSeconds(15), null),
            new("stale threshold 1 s, no skip despite live transactions", null, TimeSpan.FromSeconds(1)),
        ];
        var figures = new List<Figure>();
        foreach (var setting in settings)
            foreach (var gap in Enum.GetValues<Gap>())
            {
                var held = await MeasureAsync(schema, setting, gap, timeout, cancellationToken);
                var value = held is { } t ? $"{t.TotalSeconds:0.0} s" : $"still held after {timeout.TotalSeconds:0} s";
                Log($"{setting.Name}, {Describe(gap)}: {value}");
                figures.Add(new($"{Describe(gap)}; {setting.Name}", value));
            }
        return new BenchmarkReport(Name, figures,
        [
            $"scratch schema {schema}, the platform's Live store configuration with the settings named, its daemon started in this process; the gap's transaction took nextval of the event sequence; 'another open transaction' is one that holds a transaction id in the same database (as another schema's host or test would) while the gap's own transaction has rolled back; progress polled every {Poll.TotalMilliseconds:0} ms",
        ]);
    }

    static string Describe(Gap gap) => gap switch
    {
        Gap.RolledBack => "gap from a rolled-back append",
        Gap.HeldOpen => "gap held by its open transaction",
        _ => "gap from a rolled-back append while another transaction is open",
    };

    /// <summary>Commit of the event after the gap → the read models' progress past it; null if that took longer than the timeout.</summary>
    static async Task<TimeSpan?> MeasureAsync(string schema, Settings setting, Gap gap, TimeSpan timeout, CancellationToken ct)
    {
        var opts = new StoreOptions();
        EventStore.Configure(opts, ServiceSettings.FromEnvironment() with { PgSchema = schema }, ProjectionLayout.Live, Features.All);
        opts.Projections.SkipStaleGapsDespiteLiveTransactionsAfter = setting.SkipDespiteLive;
        if (setting.StaleThreshold is { } threshold) opts.Projections.StaleSequenceThreshold = threshold;
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await DropAsync(database, schema, ct);
        using var store = new DocumentStore(opts);
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        await using var open = await database.OpenConnectionAsync(ct);
        try
        {
            using var daemon = await store.BuildProjectionDaemonAsync();
            await daemon.StartAllAsync();
            var first = await AppendTenantAsync(store, database, schema, "first", ct);
            if (await WaitPastAsync(store, first, timeout, ct) is null) throw new InvalidOperationException("the daemon did not project the first tenant");

            await ExecuteAsync(open, "begin", ct);
            if (gap == Gap.OtherOpenTransaction)
            {
                // A transaction id held open first, as another schema's host or test would; then the gap's own transaction rolls back.
                await ExecuteAsync(open, "select txid_current()", ct);
                await using var connection = await database.OpenConnectionAsync(ct);
                await ExecuteAsync(connection, "begin", ct);
                await ExecuteAsync(connection, $"select nextval('{schema}.mt_events_sequence')", ct);
                await ExecuteAsync(connection, "rollback", ct);
            }
            else
            {
                await ExecuteAsync(open, $"select nextval('{schema}.mt_events_sequence')", ct);
                if (gap == Gap.RolledBack) await ExecuteAsync(open, "rollback", ct);
            }
            var second = await AppendTenantAsync(store, database, schema, "second", ct);
            var held = await WaitPastAsync(store, second, timeout, ct);
            await daemon.StopAllAsync();
            return held;
        }
        finally
        {
            await ExecuteAsync(open, "rollback", CancellationToken.None);
            await DropAsync(database, schema, CancellationToken.None);
        }
    }

    static async Task<long> AppendTenantAsync(DocumentStore store, NpgsqlDataSource database, string schema, string name, CancellationToken ct)
    {
        await using (var session = store.LightweightSession())
        {
            var id = $"gap-{name}-{Guid.NewGuid():N}";
            session.Events.StartStream(id, new TenantCreated(id, name, "USD", DateTimeOffset.UtcNow));
            await session.SaveChangesAsync(ct);
        }
        await using var last = database.CreateCommand($"select max(seq_id) from {schema}.mt_events");
        return (long)(await last.ExecuteScalarAsync(ct))!;
    }

    static async Task<TimeSpan?> WaitPastAsync(DocumentStore store, long sequence, TimeSpan timeout, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(started) < timeout)
        {
            if (await Drafts.ProgressAsync(store, ct) >= sequence) return Stopwatch.GetElapsedTime(started);
            await Task.Delay(Poll, ct);
        }
        return null;
    }

    static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }

    static async Task DropAsync(NpgsqlDataSource database, string schema, CancellationToken ct)
    {
        await using var drop = database.CreateCommand($"drop schema if exists {schema} cascade");
        await drop.ExecuteNonQueryAsync(ct);
    }

    static void Log(string line) => Console.WriteLine($"[stale-gaps {DateTime.Now.ToString("HH:mm:ss", CultureInfo.InvariantCulture)}] {line}");
}
