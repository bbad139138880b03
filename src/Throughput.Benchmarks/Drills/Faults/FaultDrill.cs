using System.Globalization;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;
using Throughput.Flywheel.Batching;
using Throughput.Serving;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>What the drill was asked to do.</summary>
public sealed record DrillPlan(
    int Rounds, TimeSpan Load, TimeSpan Down, TimeSpan LongDown, TimeSpan Warmup, TimeSpan SettleTimeout, IReadOnlyList<FaultKind> Faults, int Nodes,
    FleetOptions Fleet, string Model, string ScratchName, bool KeepServices, string ReportPath, string CommandLine)
{
    public TimeSpan Round => Load / Rounds;
}

/// <summary>Everything the drill saw, for its report.</summary>
public sealed record DrillResult(
    DrillPlan Plan, string Run, DateTimeOffset Started, DateTimeOffset Finished, IReadOnlyList<(string What, string Value)> Machine,
    ScratchServices Services, string HostLog, DrillWorld World,
    IReadOnlyList<FaultOutcome> Faults, IReadOnlyList<Settlement> Settlements, IReadOnlyList<NodeFigures> Nodes, string? Aborted);

/// <summary>A serving node's SDK counters at the end.</summary>
public sealed record NodeFigures(
    string ProducerId, long HandedOver, long Confirmed, long Batches, long Republishes, long Reconnects, long PublishFailures,
    long Pulls, long FeedReconnects, long PushesApplied, long LeaseRenewals, long FeedFailures);

/// <summary>
/// The fault drill: while the reference Flywheel batcher serves three customers through two serving nodes (each holding its
/// own lease on every deployment), it repeatedly
/// SIGKILLs the platform host, restarts (or kills) RabbitMQ, restarts and crashes PostgreSQL and cuts a node's broker
/// connections; after every round it pauses the load, lets everything settle and compares what the nodes' publishers had
/// confirmed with what the platform bills — the deployments' metered totals, the usage series and the invoice drafts.
/// Target: nothing lost, nothing counted twice, every time; the batcher keeps serving within its last known limits while
/// the platform is away. It runs against scratch services of its own (infra/drills/nodes.sh), never the shared ones.
/// </summary>
public sealed class FaultDrill : IBenchmark
{
    static readonly TimeSpan MinimumGap = TimeSpan.FromSeconds(3);
    static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(60);

    public string Name => "faults";

    public string Summary => "fault drill (not in 'all'): kills the host, RabbitMQ and PostgreSQL and cuts a serving node under Flywheel load; published vs billed must be exact";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("rounds", "rounds; each inflicts every fault once (2)"),
        ("minutes", "minutes of load over all rounds, faults spread evenly; a fault's recovery may stretch it (4)"),
        ("down", "seconds a killed host, broker or database stays down before it is started again (10)"),
        ("long-down", "seconds PostgreSQL stays down after its crash in even rounds, beyond the consumer's bounded retries (40)"),
        ("warmup", "seconds of load before the first fault (15)"),
        ("settle", "seconds to wait after each round for the platform to bill everything published (120)"),
        ("faults", "which faults, in order: host-kill,rabbit,pg-restart,pg-crash,node-cut (all)"),
        ("nodes", "serving nodes, each with its own cache, feed and publisher (2)"),
        ("iteration-ms", "GPU iteration time of the simulated batcher (10)"),
        ("scratch", "the name of the scratch PostgreSQL cluster and RabbitMQ node (faults); ports from THROUGHPUT_PG_PORT / THROUGHPUT_RABBIT_PORT"),
        ("keep-services", "true: leave the scratch services running afterwards (false)"),
        ("report", "the Markdown report (artifacts/drills/faults-<time>.md)"),
        ("host-env", "NAME=VALUE added to the host's environment; repeatable"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var plan = Plan(options);
        var services = ScratchServices.FromEnvironment(plan.ScratchName);
        var topology = new BenchTopology(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)), 4);
        var hostEnvironment = options.HostEnvironment(topology.HostSettings());
        var hostDll = Services.PlatformHostDll(options);
        options.EnsureAllRead();

        Log($"run {topology.RunId}: scratch services '{services.Name}' (PostgreSQL :{services.PostgresPort}, RabbitMQ :{services.RabbitPort})");
        await services.StartAsync(cancellationToken);
        DrillResult result;
        try
        {
            result = await RunOnScratchAsync(plan, services, topology, hostDll, hostEnvironment, cancellationToken);
        }
        finally
        {
            if (!plan.KeepServices)
            {
                Log("stopping the scratch services");
                await services.StopAsync();
            }
        }

        var report = DrillReport.Of(result);
        await DrillReport.SaveAsync(plan.ReportPath, report.Markdown, report.CountLine, Log);
        return report.Summary;
    }

    static async Task<DrillResult> RunOnScratchAsync(DrillPlan plan, ScratchServices services, BenchTopology topology, string hostDll,
        IReadOnlyDictionary<string, string> hostEnvironment, CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var machine = await Machine.DescribeAsync(ct);
        try
        {
            await using var host = await PlatformHost.StartAsync(hostDll, hostEnvironment, ct);
            Log($"platform host pid {host.ProcessId} ready on {host.BaseAddress} (log: {host.LogPath})");
            var producers = Enumerable.Range(0, plan.Nodes).Select(n => $"faults-{topology.RunId}-node{n}").ToList();
            using var world = await DrillWorld.SetUpAsync(host.BaseAddress, host.OperatorKey, topology.RunId, plan.Model, producers, ct);
            Log($"region {world.Region}: {string.Join("; ", world.Deployments.Select(d => $"{d.Customer.Customer.Name} {d.Customer.Customer.Ptu} PTU{(d.Spillover ? " with spillover" : "")}, offered {d.OfferedFactor}×"))}");

            var nodes = new List<BatcherNode>();
            try
            {
                await BatcherNode.StartEachAsync(nodes, world, producers, topology.Exchange, plan.Fleet, leases: true, ct);
                var (faults, settlements, aborted) = await DriveAsync(plan, services, host, world, nodes, topology, started, ct);
                var figures = nodes.Select(n => new NodeFigures(n.ProducerId, n.HandedOver, n.Publisher.RecordsConfirmed, n.Publisher.BatchesPublished,
                    n.Publisher.Republishes, n.Publisher.Reconnects, n.PublishFailures, n.Feed.Pulls, n.Feed.Reconnects, n.Feed.PushesApplied, n.Feed.LeaseRenewals, n.FeedFailures)).ToList();
                return new DrillResult(plan, topology.RunId, started, DateTimeOffset.UtcNow, machine, services, host.LogPath, world, faults, settlements, figures, aborted);
            }
            finally
            {
                foreach (var node in nodes) await node.DisposeAsync();
            }
        }
        finally
        {
            await topology.RemoveAsync();
        }
    }

    /// <summary>Warm-up, then per round every fault at its slot, then a settlement; the last settlement is the final count.</summary>
    static async Task<(List<FaultOutcome>, List<Settlement>, string?)> DriveAsync(
        DrillPlan plan, ScratchServices services, PlatformHost host, DrillWorld world, List<BatcherNode> nodes, BenchTopology topology, DateTimeOffset started, CancellationToken ct)
    {
        var injector = new FaultInjector(services, host, nodes, plan.Down, plan.LongDown, Log);
        var faults = new List<FaultOutcome>();
        var settlements = new List<Settlement>();
        Log($"warming up for {plan.Warmup.TotalSeconds:0} s");
        await Task.Delay(plan.Warmup, ct);
        string? aborted = null;
        for (var round = 1; round <= plan.Rounds && aborted is null; round++)
        {
            var roundStart = DateTimeOffset.UtcNow;
            var slot = plan.Round / plan.Faults.Count;
            var ready = roundStart;
            foreach (var (kind, i) in plan.Faults.Select((k, i) => (k, i)))
            {
                await DelayUntilAsync(Later(roundStart + slot * i + slot / 4, ready + MinimumGap), ct);
                var outcome = await injector.InflictAsync(round, kind, ct);
                faults.Add(outcome);
                ready = DateTimeOffset.UtcNow;
                if (outcome.Failure is not null)
                {
                    aborted = $"round {round}: {outcome.What}: {outcome.Failure}";
                    break;
                }
            }
            if (aborted is null) await DelayUntilAsync(Later(roundStart + plan.Round, ready + MinimumGap), ct);
            var settlement = await SettleAsync(round, plan.SettleTimeout, world, nodes, host, topology, started, ct);
            settlements.Add(settlement);
            Log($"round {round} settled in {settlement.Took.TotalSeconds:0.0} s: published {settlement.PublishedRecords():N0} records, " +
                $"billed {settlement.BilledRecords("metered totals"):N0}; lost {settlement.Lost("metered totals")}, double-counted {settlement.DoubleCounted("metered totals")}; " +
                $"{(settlement.Exact ? "every view and invoice exact" : $"{settlement.Differences().Count} differences")}");
            if (round < plan.Rounds) foreach (var node in nodes) node.Resume();
        }
        return (faults, settlements, aborted);
    }

    /// <summary>
    /// Pauses the load, flushes the publishers, and reads the platform until every view agrees with what was published or
    /// the settle time is up; then once more a little later, so a duplicate arriving late would show.
    /// </summary>
    internal static async Task<Settlement> SettleAsync(
        int round, TimeSpan settleTimeout, DrillWorld world, IReadOnlyList<BatcherNode> nodes, PlatformHost host, BenchTopology topology, DateTimeOffset since, CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var deadline = started + settleTimeout;
        await Task.WhenAll(nodes.Select(n => n.PauseAsync()));
        try
        {
            await Task.WhenAll(nodes.Select(n => n.Publisher.FlushAsync(ct))).WaitAsync(FlushTimeout, ct);
        }
        catch (TimeoutException)
        {
            Log($"the publishers did not get every record confirmed within {FlushTimeout.TotalSeconds:0} s");
        }
        var published = nodes.SelectMany(n => n.Published()).GroupBy(p => p.Key)
            .ToDictionary(g => g.Key, g => g.Select(p => p.Value).Aggregate(UsageFigures.None, (a, b) => a.Plus(b)), StringComparer.Ordinal);
        long deadLettered;
        await using (var rabbit = await RabbitQueues.ConnectAsync(Services.PlatformBroker(), ct))
            deadLettered = await rabbit.ReadyMessagesAsync(topology.PartitionQueues.Select(q => q + "_error"), ct);
        Settlement Reading(Dictionary<string, BilledUsage> billed) => new(round, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow - started,
            nodes.Sum(n => n.HandedOver), nodes.Sum(n => n.Publisher.RecordsConfirmed), deadLettered, published, billed, world.Prices);

        Settlement? last = null;
        while (true)
        {
            if (await TryReadAsync(world, since, ct) is { } billed)
            {
                last = Reading(billed);
                if (last.Differences().Count == 0 && last.Invoices().All(i => i.Differences.Count == 0)) break;
            }
            if (DateTimeOffset.UtcNow > deadline)
            {
                // Nothing to compare against if the platform never answered: ask once more, waiting for it, or fail loudly.
                await host.WaitUntilReadyAsync(TimeSpan.FromSeconds(30), ct);
                return last ?? Reading(await ReadAsync(world, since, ct));
            }
            await Task.Delay(500, ct);
        }
        await Task.Delay(TimeSpan.FromSeconds(3), ct);
        return Reading(await ReadAsync(world, since, ct));
    }

    static async Task<Dictionary<string, BilledUsage>?> TryReadAsync(DrillWorld world, DateTimeOffset since, CancellationToken ct)
    {
        try
        {
            return await ReadAsync(world, since, ct);
        }
        catch (HttpRequestException)
        {
            return null; // not back yet
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return null; // an answer took longer than the client waits
        }
    }

    static async Task<Dictionary<string, BilledUsage>> ReadAsync(DrillWorld world, DateTimeOffset since, CancellationToken ct)
    {
        var billed = new Dictionary<string, BilledUsage>(StringComparer.Ordinal);
        foreach (var deployment in world.Deployments) billed[deployment.Id] = await BilledUsage.ReadAsync(deployment, since, ct);
        return billed;
    }

    static DrillPlan Plan(BenchOptions options)
    {
        var rounds = options.Count("rounds", 2);
        var faults = options.Text("faults", "host-kill,rabbit,pg-restart,pg-crash,node-cut").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(f => f switch
            {
                "host-kill" => FaultKind.HostKill,
                "rabbit" => FaultKind.RabbitRestart,
                "pg-restart" => FaultKind.PostgresRestart,
                "pg-crash" => FaultKind.PostgresCrash,
                "node-cut" => FaultKind.NodeCut,
                _ => throw new UsageException($"--faults: no fault '{f}' (host-kill, rabbit, pg-restart, pg-crash, node-cut)"),
            }).ToList();
        if (rounds < 1 || faults.Count == 0) throw new UsageException("--rounds must be at least 1 and --faults name at least one fault");
        var nodes = options.Count("nodes", 2);
        if (nodes < 1) throw new UsageException("--nodes must be at least 1");
        var iteration = options.Milliseconds("iteration-ms", TimeSpan.FromMilliseconds(10));
        var report = options.Text("report", Path.Combine("artifacts", "drills", $"faults-{DateTime.UtcNow:yyyyMMdd-HHmmss}.md"));
        return new DrillPlan(rounds, options.Minutes("minutes", TimeSpan.FromMinutes(4)), options.Seconds("down", TimeSpan.FromSeconds(10)), options.Seconds("long-down", TimeSpan.FromSeconds(40)),
            options.Seconds("warmup", TimeSpan.FromSeconds(15)), options.Seconds("settle", TimeSpan.FromSeconds(120)), faults, nodes,
            new FleetOptions { Nodes = 2, IterationTime = iteration }, "gpt-4o-mini", options.Text("scratch", "faults"),
            options.Text("keep-services", "false") == "true", report, string.Join(' ', Environment.GetCommandLineArgs().Skip(1)));
    }

    static DateTimeOffset Later(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    static async Task DelayUntilAsync(DateTimeOffset at, CancellationToken ct)
    {
        var wait = at - DateTimeOffset.UtcNow;
        if (wait > TimeSpan.Zero) await Task.Delay(wait, ct);
    }

    static void Log(string line) => Console.WriteLine($"[faults {DateTime.Now:HH:mm:ss}] {line}");
}
