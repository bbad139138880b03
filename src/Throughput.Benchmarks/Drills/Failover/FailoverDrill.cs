using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Npgsql;
using Throughput.Benchmarks.Drills.Faults;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Demo;
using Throughput.Flywheel.Load;

namespace Throughput.Benchmarks.Drills.Failover;

/// <summary>Which member of the failover group a round kills.</summary>
public enum FailoverTarget
{
    Primary,
    Standby,
    Monitor,
}

/// <summary>What the HA drill was asked to do.</summary>
public sealed record FailoverPlan(
    IReadOnlyList<FailoverTarget> Rounds, TimeSpan Round, TimeSpan Warmup, TimeSpan Down, TimeSpan SettleTimeout, int Nodes, int Buyers, decimal BuyPoolPtu,
    FleetOptions Fleet, string Model, bool KeepServices, string ReportPath, string CommandLine);

/// <summary>
/// One round: which node died when, how long until another node took writes (primary rounds), until the platform's
/// metering committed again and until its API answered again, and what the clients saw meanwhile.
/// </summary>
public sealed record FailoverRound(
    int Round, FailoverTarget Target, string Node, DateTimeOffset At, TimeSpan? ToNewPrimary, string PrimaryAfter, TimeSpan? IngestionGap, TimeSpan? ApiBack,
    TimeSpan? Rejoined, ProbeCounts Probe, string? Failure);

/// <summary>A settled round's exactness: published vs billed, the purchase pool, the archived customer's draft.</summary>
public sealed record RoundCheck(
    int Round, Settlement Settlement, PoolCheck Pool, bool DraftUnchanged, long PurchasesBought, long PurchasesRefused, long Released, long Unavailable503, long ServerErrors, string? BuyerFailure);

public sealed record FailoverResult(
    FailoverPlan Plan, string Run, DateTimeOffset Started, DateTimeOffset Finished, IReadOnlyList<(string What, string Value)> Machine, string HostLog,
    DrillWorld World, IReadOnlyList<FailoverRound> Rounds, IReadOnlyList<RoundCheck> Checks, string StateBefore, string StateAfter, string? Aborted);

/// <summary>
/// The HA drill: the platform runs on a pg_auto_failover group (infra/drills/ha.sh: monitor, primary, synchronous standby)
/// under the fault drill's Flywheel metering load and a purchase load, and each round SIGKILLs one member — the primary
/// (its pg_autoctl and PostgreSQL together, as a lost machine), the standby, the monitor — and starts it again once the
/// group has moved on. Measured: time until another node takes writes, until metering commits again, until the API
/// answers again. Checked after every round, with the load paused: every record published is billed once in every view,
/// the pool sold exactly what the buyers hold and never more than it has, the archived customer's invoice draft is byte-
/// identical, and no HTTP answer was a 5xx other than 503 with Retry-After.
/// </summary>
public sealed class FailoverDrill : IBenchmark
{
    static readonly TimeSpan RecoveryTimeout = TimeSpan.FromSeconds(180);
    static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);

    public string Name => "ha";

    public string Summary => "HA drill (not in 'all'): kills the PostgreSQL primary, standby and monitor of a pg_auto_failover group under metering and purchase load; exact counts, failover times";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("rounds", "which member each round kills, in order: primary,standby,monitor (primary,standby,monitor)"),
        ("round-seconds", "seconds of load per round, the kill a quarter of the way in; recovery may stretch it (60)"),
        ("warmup", "seconds of load before the first round (15)"),
        ("down", "seconds a killed standby or monitor stays down (a killed primary is started again once another node took over) (15)"),
        ("settle", "seconds to wait after each round for the platform to bill everything published (120)"),
        ("nodes", "serving nodes (2)"),
        ("buyers", "concurrent buyers keeping the purchase pool full (2)"),
        ("buy-pool", "PTU in the purchase pool; buyers take 0.5 PTU at a time (5)"),
        ("keep-services", "true: leave the failover group and the scratch broker running afterwards (false)"),
        ("report", "the Markdown report (artifacts/drills/ha-<time>.md)"),
        ("host-env", "NAME=VALUE added to the host's environment; repeatable"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var plan = Plan(options);
        var group = FailoverGroup.Local();
        var broker = ScratchServices.FromEnvironment("faults");
        var topology = new BenchTopology(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)), 4);
        var hostEnvironment = options.HostEnvironment(topology.HostSettings());
        var hostDll = Services.PlatformHostDll(options);
        options.EnsureAllRead();

        Log($"run {topology.RunId}: failover group of infra/drills/ha.sh ({Environment.GetEnvironmentVariable("THROUGHPUT_PG_HOSTS")}), scratch RabbitMQ :{broker.RabbitPort}");
        await group.StartAsync(cancellationToken);
        await broker.RabbitStartAsync(cancellationToken);
        FailoverResult result;
        try
        {
            result = await RunOnGroupAsync(plan, group, topology, hostDll, hostEnvironment, cancellationToken);
        }
        finally
        {
            if (!plan.KeepServices)
            {
                Log("stopping the failover group and the scratch broker");
                await group.StopAsync();
                await broker.RabbitStopAsync(CancellationToken.None);
            }
        }

        var report = FailoverReport.Of(result);
        await DrillReport.SaveAsync(plan.ReportPath, report.Markdown, report.CountLine, Log);
        return report.Summary;
    }

    static async Task<FailoverResult> RunOnGroupAsync(FailoverPlan plan, FailoverGroup group, BenchTopology topology, string hostDll,
        IReadOnlyDictionary<string, string> hostEnvironment, CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var machine = await Machine.DescribeAsync(ct);
        var stateBefore = await group.StateAsync(ct);
        try
        {
            await using var host = await PlatformHost.StartAsync(hostDll, hostEnvironment, ct);
            Log($"platform host pid {host.ProcessId} ready on {host.BaseAddress} (log: {host.LogPath})");
            var producers = Enumerable.Range(0, plan.Nodes).Select(n => $"ha-{topology.RunId}-node{n}").ToList();
            using var world = await DrillWorld.SetUpAsync(host.BaseAddress, host.OperatorKey, topology.RunId, plan.Model, producers, ct);
            using var clients = new Clients(host.BaseAddress);
            var op = clients.For(host.OperatorKey);

            // The purchase pool, and two customers there whose deployments are bought and released at once: the archived
            // customer's draft stays as it is from then on, and the buyers' tenant starts with nothing held.
            var buyRegion = $"ha-buy-{topology.RunId}";
            await PlatformSetup.EnsurePoolAsync(op, plan.Model, buyRegion, plan.BuyPoolPtu, ct);
            var scenario = new Scenario { Model = plan.Model, Region = buyRegion, Customers = [] };
            var archived = await PlatformSetup.ProvisionAsync(op, clients.For, new Customer("Archive Co", Workload.Chat, Ptu: 1m), scenario, topology.RunId, ct);
            await PlatformSetup.ReleaseAsync(archived, ct);
            var buyer = await PlatformSetup.ProvisionAsync(op, clients.For, new Customer("Buyer Co", Workload.Chat, Ptu: 0.5m), scenario, topology.RunId, ct);
            await PlatformSetup.ReleaseAsync(buyer, ct);
            await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString() + ";Timeout=2;Command Timeout=2;Pooling=false");
            var schema = hostEnvironment.GetValueOrDefault("THROUGHPUT_PG_SCHEMA", Services.PostgresSchema());
            var draftBefore = await CanonicalDraftAsync(archived.Tenant, await NewestEventAsync(database, schema, "deployment_released", ct, archived.DeploymentId), ct);

            var nodes = new List<BatcherNode>();
            try
            {
                // Each node follows the whole limit, as before leases (#17): the HA drill has not been run with leases yet.
                await BatcherNode.StartEachAsync(nodes, world, producers, topology.Exchange, plan.Fleet, leases: false, ct);
                await using var purchasers = Purchasers.Start(op, buyer.Tenant, plan.Model, buyRegion, plan.Buyers);
                await using var probe = OutageProbe.Start(world.Deployments[0].Customer.Tenant, $"/v1/deployments/{world.Deployments[0].Id}");

                var rounds = new List<FailoverRound>();
                var checks = new List<RoundCheck>();
                string? aborted = null;
                Log($"warming up for {plan.Warmup.TotalSeconds:0} s");
                await Task.Delay(plan.Warmup, ct);
                foreach (var (target, i) in plan.Rounds.Select((t, i) => (t, i + 1)))
                {
                    var roundStart = DateTimeOffset.UtcNow;
                    await Task.Delay(plan.Round / 4, ct);
                    var outcome = await KillAndRecoverAsync(i, target, plan, group, host, probe, database, schema, ct);
                    rounds.Add(outcome);
                    if (outcome.Failure is not null)
                    {
                        aborted = $"round {i}: {outcome.Failure}";
                        break;
                    }
                    var rest = roundStart + plan.Round - DateTimeOffset.UtcNow;
                    if (rest > TimeSpan.Zero) await Task.Delay(rest, ct);

                    purchasers.Pause();
                    var settlement = await FaultDrill.SettleAsync(i, plan.SettleTimeout, world, nodes, host, topology, started, ct);
                    await Task.Delay(TimeSpan.FromSeconds(1), ct); // a purchase in flight when paused lands
                    var pool = await purchasers.CheckAsync(ct);
                    var draftUnchanged = (await CanonicalDraftAsync(archived.Tenant, 0, ct)) == draftBefore;
                    var (ok, unavailable, errors) = probe.Totals();
                    checks.Add(new RoundCheck(i, settlement, pool, draftUnchanged, purchasers.Bought, purchasers.Refused, purchasers.Released,
                        unavailable + purchasers.Unavailable, errors + purchasers.ServerErrors, purchasers.Failure));
                    Log($"round {i} settled: published {settlement.PublishedRecords():N0}, lost {settlement.Lost("metered totals")}, double-counted {settlement.DoubleCounted("metered totals")}, " +
                        $"{(settlement.Exact ? "every view exact" : "DIFFERENCES")}; pool sold {pool.Sold} of {pool.Capacity} PTU, buyers hold {pool.Held}; archived draft {(draftUnchanged ? "unchanged" : "CHANGED")}");
                    foreach (var node in nodes) node.Resume();
                    purchasers.Resume();
                }
                var stateAfter = await group.StateAsync(ct);
                return new FailoverResult(plan, topology.RunId, started, DateTimeOffset.UtcNow, machine, host.LogPath, world, rounds, checks, stateBefore, stateAfter, aborted);
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

    static async Task<FailoverRound> KillAndRecoverAsync(int round, FailoverTarget target, FailoverPlan plan, FailoverGroup group, PlatformHost host, OutageProbe probe,
        NpgsqlDataSource database, string schema, CancellationToken ct)
    {
        var node = target switch
        {
            FailoverTarget.Primary => await group.PrimaryAsync(ct),
            FailoverTarget.Standby => await group.StandbyAsync(ct),
            _ => FailoverGroup.Monitor,
        };
        var primaryBefore = await group.PrimaryAsync(ct);
        Log($"round {round}: SIGKILL {target.ToString().ToLowerInvariant()} '{node}' (primary '{primaryBefore}')");
        probe.Mark();
        var at = DateTimeOffset.UtcNow;
        var clock = Stopwatch.StartNew();
        TimeSpan? toPrimary = null, gap = null, rejoined = null;
        string primaryAfter = primaryBefore;
        try
        {
            await group.KillAsync(node, ct);
            var ingestion = IngestionResumesAsync(database, schema, ct);
            if (target == FailoverTarget.Primary)
            {
                primaryAfter = await group.WaitForPrimaryAsync(node, ct);
                toPrimary = clock.Elapsed;
                Log($"round {round}: '{primaryAfter}' takes writes after {toPrimary.Value.TotalSeconds:0.0} s");
            }
            gap = await ingestion - at;
            Log($"round {round}: metering committed again after {gap.Value.TotalSeconds:0.0} s");
            if (target != FailoverTarget.Primary)
            {
                var down = plan.Down - clock.Elapsed;
                if (down > TimeSpan.Zero) await Task.Delay(down, ct);
            }
            var restarted = clock.Elapsed;
            await group.RunAsync(node, ct);
            // Back in the group: a node as its primary's secondary again, the monitor answering again.
            await WaitAsync(async () => target == FailoverTarget.Monitor ? await group.PrimaryAsync(ct) != "" : await group.StandbyAsync(ct) == node, ct);
            rejoined = clock.Elapsed - restarted;
            Log($"round {round}: '{node}' started again and back in the group after {rejoined.Value.TotalSeconds:0.0} s");
            await host.WaitUntilReadyAsync(RecoveryTimeout, ct);
            return new FailoverRound(round, target, node, at, toPrimary, primaryAfter, gap, probe.BackAfterMark(), rejoined, probe.SinceMark(), null);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            Log($"round {round}: NOT recovered: {e.Message}");
            return new FailoverRound(round, target, node, at, toPrimary, primaryAfter, gap, probe.BackAfterMark(), rejoined, probe.SinceMark(), e.Message);
        }
    }

    /// <summary>
    /// When metering commits again: the newest usage event's sequence number is read until it moves past the first value read
    /// after the kill (a commit just before the kill cannot pass for a resumption); a read fails while no node takes writes.
    /// </summary>
    static async Task<DateTimeOffset> IngestionResumesAsync(NpgsqlDataSource database, string schema, CancellationToken ct)
    {
        long? baseline = null;
        var deadline = DateTimeOffset.UtcNow + RecoveryTimeout;
        while (DateTimeOffset.UtcNow < deadline)
        {
            try
            {
                var newest = await NewestEventAsync(database, schema, "usage_batch_metered", ct);
                if (baseline is { } first && newest > first) return DateTimeOffset.UtcNow;
                baseline ??= newest;
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
            {
                // No node takes writes (or reads) yet.
            }
            await Task.Delay(Poll, ct);
        }
        throw new TimeoutException($"metering did not commit again within {RecoveryTimeout.TotalSeconds:0} s");
    }

    /// <summary>The newest event's sequence number of one type, in one stream or any.</summary>
    static async Task<long> NewestEventAsync(NpgsqlDataSource database, string schema, string type, CancellationToken ct, string? stream = null)
    {
        await using var command = database.CreateCommand($"select coalesce(max(seq_id), 0) from {schema}.mt_events where type = @type and (@stream = '' or stream_id = @stream)");
        command.Parameters.AddWithValue("type", type);
        command.Parameters.AddWithValue("stream", stream ?? "");
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>
    /// The invoice draft as the tenant reads it once its billing account has projected events up to <paramref name="through"/>,
    /// without what moves with the clock and the daemon (asOf, projectedThrough).
    /// </summary>
    static async Task<string> CanonicalDraftAsync(HttpClient tenant, long through, CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + RecoveryTimeout;
        while (true)
        {
            try
            {
                var draft = (await tenant.GetFromJsonAsync<JsonObject>("/v1/invoices/draft", ct))!;
                if (draft["projectedThrough"]!.GetValue<long>() >= through || DateTimeOffset.UtcNow > deadline)
                {
                    draft.Remove("asOf");
                    draft.Remove("projectedThrough");
                    return draft.ToJsonString();
                }
            }
            catch (HttpRequestException) when (DateTimeOffset.UtcNow < deadline)
            {
                // No billing account yet: the daemon projects it a moment after the purchase.
            }
            await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
        }
    }

    static async Task WaitAsync(Func<Task<bool>> done, CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + RecoveryTimeout;
        while (!await done())
        {
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"waited {RecoveryTimeout.TotalSeconds:0} s for the node to rejoin the group");
            await Task.Delay(Poll, ct);
        }
    }

    static FailoverPlan Plan(BenchOptions options)
    {
        var rounds = options.Text("rounds", "primary,standby,monitor").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(r => Enum.TryParse<FailoverTarget>(r, ignoreCase: true, out var t) ? t : throw new UsageException($"--rounds: no member '{r}' (primary, standby, monitor)")).ToList();
        if (rounds.Count == 0) throw new UsageException("--rounds must name at least one member");
        var nodes = options.Count("nodes", 2);
        var report = options.Text("report", Path.Combine("artifacts", "drills", $"ha-{DateTime.UtcNow:yyyyMMdd-HHmmss}.md"));
        return new FailoverPlan(rounds, options.Seconds("round-seconds", TimeSpan.FromSeconds(60)), options.Seconds("warmup", TimeSpan.FromSeconds(15)),
            options.Seconds("down", TimeSpan.FromSeconds(15)), options.Seconds("settle", TimeSpan.FromSeconds(120)), nodes, options.Count("buyers", 2),
            options.Count("buy-pool", 5), new FleetOptions { Nodes = 2, IterationTime = TimeSpan.FromMilliseconds(10) }, "gpt-4o-mini",
            options.Text("keep-services", "false") == "true", report, string.Join(' ', Environment.GetCommandLineArgs().Skip(1)));
    }

    internal static void Log(string line) => Console.WriteLine($"[ha {DateTime.Now:HH:mm:ss}] {line}");

    /// <summary>API clients of one host address, disposed together.</summary>
    sealed class Clients(Uri platform) : IDisposable
    {
        readonly List<HttpClient> _all = [];

        public HttpClient For(string apiKey)
        {
            var client = new HttpClient { BaseAddress = platform, Timeout = TimeSpan.FromSeconds(15) };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            _all.Add(client);
            return client;
        }

        public void Dispose()
        {
            foreach (var client in _all) client.Dispose();
        }
    }
}

/// <summary>What a client reading the API every 250 ms saw: answers, 503s with Retry-After, other 5xx, no answer.</summary>
public sealed record ProbeCounts(long Ok, long Unavailable, long ServerErrors, long NoAnswer);

/// <summary>A tenant reading one resource through the whole drill, as a dashboard would.</summary>
public sealed class OutageProbe : IAsyncDisposable
{
    readonly HttpClient _client;
    readonly string _path;
    readonly CancellationTokenSource _stop = new();
    readonly Lock _gate = new();
    Task _loop = Task.CompletedTask;
    long _ok, _unavailable, _errors, _silent;
    ProbeCounts _atMark = new(0, 0, 0, 0);
    DateTimeOffset _mark;
    DateTimeOffset? _backAt;
    bool _failedSinceMark;

    OutageProbe(HttpClient client, string path)
    {
        _client = client;
        _path = path;
    }

    public static OutageProbe Start(HttpClient client, string path)
    {
        var probe = new OutageProbe(client, path);
        probe._loop = Task.Run(probe.RunAsync, CancellationToken.None);
        return probe;
    }

    /// <summary>A kill happens now: counts and the time until the API answers again start from here.</summary>
    public void Mark()
    {
        lock (_gate)
        {
            _atMark = Counts();
            _mark = DateTimeOffset.UtcNow;
            _backAt = null;
            _failedSinceMark = false;
        }
    }

    /// <summary>From the mark to the first answer after a failed one; zero if no request failed.</summary>
    public TimeSpan? BackAfterMark()
    {
        lock (_gate) return !_failedSinceMark ? TimeSpan.Zero : _backAt - _mark;
    }

    public ProbeCounts SinceMark()
    {
        lock (_gate)
        {
            var now = Counts();
            return new ProbeCounts(now.Ok - _atMark.Ok, now.Unavailable - _atMark.Unavailable, now.ServerErrors - _atMark.ServerErrors, now.NoAnswer - _atMark.NoAnswer);
        }
    }

    public (long Ok, long Unavailable, long ServerErrors) Totals()
    {
        lock (_gate) return (_ok, _unavailable, _errors);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }

    ProbeCounts Counts() => new(_ok, _unavailable, _errors, _silent);

    async Task RunAsync()
    {
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using var response = await _client.GetAsync(new Uri(_path, UriKind.Relative), stop);
                lock (_gate)
                {
                    if (response.IsSuccessStatusCode)
                    {
                        _ok++;
                        if (_failedSinceMark && _backAt is null) _backAt = DateTimeOffset.UtcNow;
                    }
                    else
                    {
                        if (response.StatusCode == HttpStatusCode.ServiceUnavailable && response.Headers.RetryAfter?.Delta is not null) _unavailable++;
                        else _errors++;
                        _failedSinceMark = true;
                        _backAt = null;
                    }
                }
            }
            catch (Exception e) when (e is HttpRequestException || (e is TaskCanceledException && !stop.IsCancellationRequested))
            {
                lock (_gate)
                {
                    _silent++;
                    _failedSinceMark = true;
                    _backAt = null;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try { await Task.Delay(250, stop); }
            catch (OperationCanceledException) { return; }
        }
    }
}
