using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Npgsql;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Invoicing;
using Throughput.Benchmarks.Metering;

namespace Throughput.Benchmarks.Scale;

/// <summary>
/// The platform at N tenants × D deployments, each size in a fresh schema of its own: onboarding through the API,
/// metering spread over every deployment beside 16 deployments under the same load shape in the same run, usage to
/// draft lag, the month-end close, finance reads, the idle host, schema bytes per tenant and a full rebuild.
/// </summary>
public sealed class ScaleBenchmark : IBenchmark
{
    const int BaselineDeployments = 16;
    const double TargetDraftLagMs = 5_000;
    const double KeptUp = 0.95; // durable ÷ offered over the measured window: the load was carried, not queued
    static readonly string[] DefaultSweep = ["1000x1", "10000x1", "1000x10"];
    const string FullSize = "100000x1";

    public string Name => "scale";

    public string Summary => "N tenants × D deployments: onboarding, metering beside 16 deployments, draft lag, close, reads, idle, bytes, rebuild";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("size", $"a size NxD (tenants x deployments each); repeatable ({string.Join(", ", DefaultSweep)})"),
        ("full", $"flag: add {FullSize} to the sizes"),
        ("metering-only", "flag: per size only onboarding and metering, no draft lag, close, reads or rebuild"),
        PlatformHosts.OneHostOption,
        ("duration", "seconds of metering measured at each size (20)"),
        ("warmup", "seconds of metering before measuring; the host JIT-tiers for about 45 s (60)"),
        ("concurrency", "tenants onboarded at a time (8)"),
        .. LoadShape.Options(0, 50_000),
        ("host-env", "NAME=VALUE added to the hosts' environment; repeatable"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var sizes = options.All("size") is { Count: > 0 } given ? [.. given] : DefaultSweep.ToList();
        if (options.Text("full", "false") == "true") sizes.Add(FullSize);
        var parsed = sizes.Select(Size.Parse).ToList();
        var duration = options.Seconds("duration", TimeSpan.FromSeconds(20));
        var warmup = options.Seconds("warmup", TimeSpan.FromSeconds(60));
        var concurrency = options.Count("concurrency", 8);
        var shape = LoadShape.From(options, defaultRate: 0, defaultInFlight: 50_000);
        var hostDll = Services.PlatformHostDll(options);
        var hostEnvironment = options.HostEnvironment(new Dictionary<string, string>());
        var meteringOnly = options.Text("metering-only", "false") == "true";
        var oneHost = PlatformHosts.OneProcess(options);
        options.EnsureAllRead();
        var runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));

        List<Figure> figures = [];
        List<string> conditions =
        [
            $"each size in a fresh schema bench_scale_{runId}_… and its own metering exchange (4 partitions), dropped after; {shape.Publishers} serving nodes publish for every tenant, SDK batches ≤ {shape.MaxBatchRecords} records / {shape.MaxLinger.TotalMilliseconds:0} ms linger, {(shape.Rate > 0 ? $"{Number(shape.Rate)} records/s offered" : $"closed loop, ≤ {Number(shape.InFlight)} records in flight (its p99 is about that over the rate); at 10,000 deployments and more, then a run of its own offering the target share of the {BaselineDeployments} deployments' rate (open loop, the same in-flight bound), whose durable rate and p99 the targets are read from")}",
            $"metering {warmup.TotalSeconds:0} s warm-up + {duration.TotalSeconds:0} s measured; deployments sized so that nothing throttles (gpt-4o-mini, {nameof(MeteringFleet.PtuPerDeployment)})",
            "publish→durable: from the hand-over to the SDK of each deployment's oldest record in a usage event to the poll that first saw the event, weighted by that deployment's records in it (an upper bound per record)",
        ];
        conditions.Add($"while metering, {PlatformHosts.Describe(oneHost)}");
        Log($"run {runId}: baseline of {BaselineDeployments} deployments, then {string.Join(", ", sizes)}");
        var baseline = await RunSizeAsync(new Size(1, BaselineDeployments), $"{runId}-base", onlyMetering: true, oneHost, hostDll, hostEnvironment, shape, null, warmup, duration, concurrency, conditions, cancellationToken);
        figures.Add(new Figure($"{BaselineDeployments} deployments: metering records/s; publish→durable p99", $"{Number(baseline.Metering.DurablePerSecond)}; {Ms(baseline.Metering.PublishToDurable(99))}"));
        figures.Add(new Figure($"{BaselineDeployments} deployments: CPU cores while metering", CpuUse.Describe(baseline.Metering.Cpu)));
        figures.Add(new Figure($"{BaselineDeployments} deployments: records per message; per usage event", $"{baseline.Metering.RecordsPerMessage}; {PerEvent(baseline.Metering)}"));
        foreach (var (size, i) in parsed.Select((s, i) => (s, i)))
        {
            var targeted = size.Deployments >= 10_000;
            var (targetRatio, targetP99) = size.Deployments >= 100_000 ? (0.3, 2_000.0) : (0.5, 1_000.0);
            // The latency target holds at the target rate: in the closed loop the p99 is the records in flight over the rate, whatever the platform does.
            int? offered = targeted && shape.Rate == 0 ? (int)(targetRatio * baseline.Metering.DurablePerSecond) : null;
            var result = await RunSizeAsync(size, $"{runId}-{i}", onlyMetering: meteringOnly, oneHost, hostDll, hostEnvironment, shape, offered, warmup, duration, concurrency, conditions, cancellationToken);
            var ratio = result.Metering.DurablePerSecond / baseline.Metering.DurablePerSecond;
            var p99 = result.Metering.PublishToDurable(99);
            var label = size.ToString();
            figures.Add(new Figure($"{label}: metering records/s (÷ {BaselineDeployments} deployments)", $"{Number(result.Metering.DurablePerSecond)} ({ratio:0.00})",
                targeted ? $"≥ {targetRatio:0.0}" : null, targeted ? ratio >= targetRatio : null));
            figures.Add(new Figure($"{label}: publish→durable p99{(shape.Rate == 0 ? ", closed loop" : "")}", Ms(p99),
                targeted && offered is null ? $"≤ {Ms(targetP99)}" : null, targeted && offered is null ? p99 <= targetP99 : null));
            figures.Add(new Figure($"{label}: exactly once", result.Metering.Exactness(TimeSpan.FromSeconds(15)), "equal", result.Metering.Exact));
            figures.Add(new Figure($"{label}: CPU cores while metering", CpuUse.Describe(result.Metering.Cpu)));
            figures.Add(new Figure($"{label}: records per message; per usage event", $"{result.Metering.RecordsPerMessage}; {PerEvent(result.Metering)}"));
            if (result.AtTarget is { } atTarget && offered is { } rate)
            {
                var kept = atTarget.DurablePerSecond >= KeptUp * rate;
                var atP99 = atTarget.PublishToDurable(99);
                figures.Add(new Figure($"{label}: {Number(rate)} records/s offered ({targetRatio:0.0} of {BaselineDeployments} deployments' rate): durable records/s; publish→durable p99",
                    $"{Number(atTarget.DurablePerSecond)}; {Ms(atP99)} (p50 {Ms(atTarget.PublishToDurable(50))}; each record at its event's oldest: p99 {Ms(atTarget.PublishToDurableByEvent(99))})",
                    $"≥ {KeptUp:0%} of offered; ≤ {Ms(targetP99)}", kept && atP99 <= targetP99));
                figures.Add(new Figure($"{label}: at the offered rate: exactly once; CPU cores", $"{atTarget.Exactness(TimeSpan.FromSeconds(15))}; {CpuUse.Describe(atTarget.Cpu)}", "equal", atTarget.Exact));
            }
            figures.AddRange(result.Figures.Select(f => f with { Name = $"{label}: {f.Name}" }));
        }
        return new BenchmarkReport(Name, figures, conditions);
    }

    /// <param name="AtTarget">The same size metered at the target rate (open loop), when one was offered.</param>
    sealed record SizeResult(MeteringRun Metering, MeteringRun? AtTarget, List<Figure> Figures);

    /// <param name="offered">Records/s to offer after the closed loop, in a run of its own: the rate the targets name.</param>
    static async Task<SizeResult> RunSizeAsync(Size size, string runId, bool onlyMetering, bool oneHost, string hostDll, IReadOnlyDictionary<string, string> hostEnvironment, LoadShape shape, int? offered,
        TimeSpan warmup, TimeSpan duration, int concurrency, List<string> conditions, CancellationToken ct)
    {
        var schema = $"bench_scale_{runId.Replace('-', '_')}";
        var topology = new BenchTopology($"scale.{runId}", 4);
        var settings = topology.HostSettings();
        settings["THROUGHPUT_PG_SCHEMA"] = schema;
        settings["Invoicing__AutoIssue"] = "false";
        // One operator key onboards every tenant: the per-key limit would set the onboarding rate, not the platform.
        settings["RequestLimits__PerKeyPerSecond"] = "100000";
        settings["RequestLimits__PerKeyBurst"] = "100000";
        foreach (var (name, value) in hostEnvironment) settings[name] = value;
        List<Figure> figures = [];
        try
        {
            MeteringRun metering;
            MeteringRun? atTarget = null;
            string draftTenant;
            Log($"{size}: onboarding in schema {schema}");
            await using (var hosts = await PlatformHosts.StartAsync(hostDll, settings, oneHost, ct))
            {
                var host = hosts.Host;
                using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
                var region = $"bench-{runId}";
                var onboarding = await Onboarding.RunAsync(operatorApi, runId, size.Tenants, size.Deployments / size.Tenants, MeteringFleet.Model, region,
                    MeteringFleet.PtuPerDeployment(size.Deployments), concurrency, ct);
                figures.AddRange(onboarding.Figures);
                Log($"{size}: onboarded, {onboarding.Figures[0].Value} calls/s");
                var nodes = Enumerable.Range(0, shape.Publishers).Select(n => $"bench-{runId}-node{n}").ToList();
                var credentials = new Dictionary<string, NodeCredentials>();
                foreach (var node in nodes) credentials[node] = await NodeCredentials.RegisterAsync(operatorApi, node, region, null, ct);
                var fleet = new MeteringFleet(onboarding.TenantIds[0], onboarding.FirstTenantKey, region, onboarding.DeploymentIds, nodes, credentials);

                await using var drafts = DraftObserver.ForEveryTenant(Services.PostgresConnectionString(), schema, TimeSpan.FromMilliseconds(100));
                await using var series = DraftObserver.ForUsageSeries(Services.PostgresConnectionString(), schema, TimeSpan.FromMilliseconds(100));
                if (!onlyMetering)
                {
                    drafts.Start();
                    series.Start();
                }
                draftTenant = onboarding.TenantIds[0];
                metering = await MeteringBenchmark.MeasureAsync(host, hosts.Daemon, fleet, topology, shape, warmup, duration, TimeSpan.FromMilliseconds(100), schema, ct);
                if (offered is { } rate)
                {
                    Log($"{size}: {Number(rate)} records/s offered");
                    atTarget = await MeteringBenchmark.MeasureAsync(host, hosts.Daemon, fleet, topology, shape with { Rate = rate }, warmup, duration, TimeSpan.FromMilliseconds(100), schema, ct);
                }
                if (onlyMetering) return new SizeResult(metering, atTarget, figures);

                // The draft's lag as the targets mean it: at the offered rate when there is one.
                var lagged = atTarget ?? metering;
                var last = lagged.All.Count == 0 ? 0 : lagged.All.Max(b => b.SeqId);
                var caughtUp = await drafts.WaitForAsync(last, TimeSpan.FromSeconds(120), ct);
                var lagP99 = LagP99(drafts);
                figures.Add(new Figure("usage in every tenant's draft: hand-over → draft p99", caughtUp ? Ms(lagP99) : "NO: drafts did not catch up within 120 s",
                    $"≤ {Ms(TargetDraftLagMs)}", caughtUp && lagP99 <= TargetDraftLagMs));
                figures.Add(new Figure("usage in the usage series (minutes, hours, utilization): hand-over → series p99",
                    await series.WaitForAsync(last, TimeSpan.FromSeconds(120), ct) ? Ms(LagP99(series)) : "NO: the usage series did not catch up within 120 s"));

                double LagP99(DraftObserver observer) => Percentiles.Weighted(
                    lagged.Measured.Select(b => (observer.FirstShowing(b.SeqId) is { } shown ? (shown - b.FirstStartedAt).TotalMilliseconds : double.PositiveInfinity, b.Records)).ToList(), 99);
            }

            // A host past the month's grace period closes the month the load metered into.
            var now = DateTimeOffset.UtcNow;
            var monthStart = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero);
            var month = monthStart.ToString("yyyy-MM", CultureInfo.InvariantCulture);
            settings["Clock__Start"] = monthStart.AddMonths(1).AddDays(4).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
            Log($"{size}: closing {month}");
            await using (var host = await PlatformHost.StartAsync(hostDll, settings, ct))
            {
                figures.AddRange(await CloseBenchmark.CloseAndReadAsync(host, month, size.Tenants, draftTenant, conditions, ct));
            }

            figures.Add(new Figure("schema bytes per tenant (tables, indexes, TOAST)", Number(await SchemaBytesAsync(schema, ct) / (double)size.Tenants)));
            figures.Add(new Figure("rebuild of every projection, events/s", await RebuildAsync(hostDll, schema, ct)));
            return new SizeResult(metering, atTarget, figures);
        }
        finally
        {
            await Services.DropSchemaAsync(schema);
            await topology.RemoveAsync();
        }
    }

    static string PerEvent(MeteringRun run) => Number(run.Measured.Count == 0 ? 0 : run.Measured.Average(b => (double)b.Records));

    static async Task<long> SchemaBytesAsync(string schema, CancellationToken ct)
    {
        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand(
            "select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = @schema and c.relkind = 'r'");
        command.Parameters.AddWithValue("schema", schema);
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>The operator's rebuild (<c>infra/rebuild.sh</c>: the host's <c>rebuild-projections</c> command with its runtime settings) over the whole log.</summary>
    static async Task<string> RebuildAsync(string hostDll, string schema, CancellationToken ct)
    {
        long events;
        await using (var database = NpgsqlDataSource.Create(Services.PostgresConnectionString()))
        await using (var count = database.CreateCommand($"select count(*) from {schema}.mt_events"))
            events = (long)(await count.ExecuteScalarAsync(ct))!;
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { hostDll, "rebuild-projections" },
            WorkingDirectory = Path.GetDirectoryName(Path.GetFullPath(hostDll))!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            Environment = { ["THROUGHPUT_PG_SCHEMA"] = schema, ["DOTNET_TieredPGO"] = "0", ["DOTNET_gcServer"] = "0" },
        };
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync(ct);
        var errors = process.StandardError.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0)
        {
            Console.Error.WriteLine(await errors);
            Console.Error.WriteLine(await output);
            return $"FAILED: exit code {process.ExitCode} (its output above)";
        }
        return $"{Number(events / clock.Elapsed.TotalSeconds)} ({Number(events)} events in {clock.Elapsed.TotalSeconds:0.0} s)";
    }

    readonly record struct Size(int Tenants, int Deployments)
    {
        public static Size Parse(string text)
        {
            var parts = text.Split('x');
            if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var tenants) || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out var each) || tenants < 1 || each < 1)
                throw new UsageException($"--size '{text}': expected tenants x deployments each, as 1000x10");
            return new Size(tenants, tenants * each);
        }

        public override string ToString() => $"{Number(Tenants)} tenants × {Number(Deployments / Tenants)}";
    }

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static string Ms(double milliseconds) => $"{milliseconds.ToString("#,0", CultureInfo.InvariantCulture)} ms";

    static void Log(string line) => Console.WriteLine($"[scale {DateTime.Now:HH:mm:ss}] {line}");
}
