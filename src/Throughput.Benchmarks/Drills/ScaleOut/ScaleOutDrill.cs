using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Benchmarks.Drills.ScaleOut;

/// <summary>
/// Scale-out on one machine, for real: metering hosts share the partition queues (each the single active consumer of its
/// own share and standby on the rest), API hosts serve the customer and admission APIs, and a three-node RabbitMQ cluster
/// holds the partitions as quorum queues. Under load from the serving SDK the drill SIGKILLs a metering host, then a
/// broker node, shows the partitions moving to the survivors, and checks that every record the publishers had confirmed
/// is counted, totalled and billed exactly once.
/// </summary>
public sealed class ScaleOutDrill : IBenchmark
{
    const string DefaultNodes = "scale-a:5721,scale-b:5722,scale-c:5723";
    static readonly TimeSpan HostReadyTimeout = TimeSpan.FromMinutes(4);
    static readonly TimeSpan MoveTimeout = TimeSpan.FromSeconds(90);
    static readonly TimeSpan DrainTimeout = TimeSpan.FromMinutes(2);
    static readonly TimeSpan BillingTimeout = TimeSpan.FromMinutes(3);

    /// <summary>Tokens vary per record and every 8th is spilled, so token sums and the invoice's spillover lines check more than a record count.</summary>
    static readonly RecordMaker Varied = (id, deployment, n, now) =>
        new MeteringRecord(id, deployment, id, 64 + n % 193, n % 3 == 0 ? 32 : 0, 8 + n % 57, n % 8 == 0, 0, now, now);

    public string Name => "scale-out";

    public string Summary => "metering hosts sharing the partitions, two API hosts, a three-node RabbitMQ cluster with quorum queues: SIGKILL a host and a broker node under load; partitions move, counts stay exact";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("minutes", "minutes of load (3): the metering host is killed at 20 %, the broker node at 45 % and started again at 60 %"),
        ("rate", "records/s offered in total (15000)"),
        ("deployments", "deployments metered into (16)"),
        ("publishers", "SDK publishers, each its own producer id and connection to a random node (3)"),
        ("partitions", "metering partition queues (8)"),
        ("metering-hosts", "hosts with roles Metering,Daemon sharing the partitions (2)"),
        ("api-hosts", "hosts with role Api (2)"),
        ("in-flight", "records handed to the SDK and not yet durable, at most (600000)"),
        ("nodes", $"the scratch RabbitMQ cluster as name:port, comma-separated ({DefaultNodes})"),
        ("kill-node", "the broker node to SIGKILL (default: one carrying SDK publishers and active consumers, then the most leaders)"),
        ("restart-node", "start the killed node again while the load runs: yes or no (yes)"),
        ("nodes-script", "the script that runs the nodes (infra/drills/nodes.sh)"),
        ("host-env", "NAME=VALUE added to every host's environment; repeatable"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var plan = new Plan(
            runId,
            options.Minutes("minutes", TimeSpan.FromMinutes(3)),
            options.Count("deployments", 16),
            new LoadShape(options.Count("publishers", 3), options.Count("rate", 15_000), options.Count("in-flight", 600_000), 1000, TimeSpan.FromMilliseconds(20)),
            new BenchTopology(runId, options.Count("partitions", 8)),
            options.Count("metering-hosts", 2),
            options.Count("api-hosts", 2),
            options.Text("kill-node", ""),
            options.Text("restart-node", "yes") != "no");
        if (plan.MeteringHosts < 2 || plan.ApiHosts < 1) throw new UsageException("--metering-hosts must be at least 2 (one to kill, one to take over) and --api-hosts at least 1");
        var cluster = BrokerCluster.Parse(options.Text("nodes", DefaultNodes), options.Text("nodes-script", Path.Combine(Services.RepositoryRoot(), "infra", "drills", "nodes.sh")));
        if (plan.KillNode.Length > 0) cluster.Named(plan.KillNode);
        var hostDll = Services.PlatformHostDll(options);
        var environments = plan.Hosts.ToDictionary(h => h.Name, h => options.HostEnvironment(plan.Environment(h, cluster.Settings)));
        options.EnsureAllRead();

        var run = new Run(plan, cluster);
        try
        {
            await run.StartHostsAsync(hostDll, environments, cancellationToken);
            return await run.DrillAsync(cancellationToken);
        }
        finally
        {
            await run.DisposeAsync();
            await plan.Topology.RemoveAsync(cluster.Settings);
            await Services.DropSchemaAsync(plan.Schema);
        }
    }

    sealed record HostSpec(string Name, string Roles, int? Instance)
    {
        public bool Metering => Instance is not null;
    }

    sealed record Plan(string RunId, TimeSpan Load, int Deployments, LoadShape Shape, BenchTopology Topology, int MeteringHosts, int ApiHosts, string KillNode, bool RestartNode)
    {
        public string Schema => $"scale_{RunId}";

        public TimeSpan KillHostAt => Load * 0.2;

        public TimeSpan KillNodeAt => Load * 0.45;

        public TimeSpan RestartNodeAt => Load * 0.6;

        public IReadOnlyList<HostSpec> Hosts =>
        [
            .. Enumerable.Range(0, MeteringHosts).Select(i => new HostSpec($"metering-{i}", "Metering,Daemon", i)),
            .. Enumerable.Range(0, ApiHosts).Select(i => new HostSpec($"api-{i}", "Api", null)),
        ];

        public Dictionary<string, string> Environment(HostSpec host, BrokerSettings broker)
        {
            var environment = Topology.HostSettings();
            environment["THROUGHPUT_PG_SCHEMA"] = Schema;
            environment["THROUGHPUT_RABBIT_HOST"] = broker.Host;
            environment["THROUGHPUT_RABBIT_PORT"] = broker.Port.ToString(CultureInfo.InvariantCulture);
            environment["THROUGHPUT_RABBIT_NODES"] = broker.Nodes;
            environment["THROUGHPUT_RABBIT_MANAGEMENT"] = string.Join(",", broker.Endpoints.Select(e => $"http://{e.HostName}:{e.Port + 10000}"));
            environment["Host__Roles"] = host.Roles;
            environment["Host__Name"] = host.Name;
            environment["Metering__QuorumQueues"] = "true";
            environment["Metering__Instances"] = MeteringHosts.ToString(CultureInfo.InvariantCulture);
            if (host.Instance is { } instance) environment["Metering__Instance"] = instance.ToString(CultureInfo.InvariantCulture);
            return environment;
        }
    }

    /// <summary>One drill run: its processes, its timeline and what it found.</summary>
    sealed class Run(Plan plan, BrokerCluster cluster) : IAsyncDisposable
    {
        readonly Dictionary<string, PlatformHost> _hosts = new(StringComparer.Ordinal);
        readonly List<Figure> _figures = [];
        readonly StringBuilder _details = new();
        readonly HashSet<string> _liveNodes = [.. cluster.Nodes.Select(n => n.Name)];
        readonly List<(string What, DateTimeOffset At)> _kills = [];
        string _hostDll = "";
        Dictionary<string, Dictionary<string, string>> _environments = [];
        long _loadStarted;

        IReadOnlyList<string> MeteringHosts => [.. plan.Hosts.Where(h => h.Metering && _hosts.TryGetValue(h.Name, out var p) && !p.HasExited).Select(h => h.Name)];

        BrokerNode AskedNode => cluster.Nodes.First(n => _liveNodes.Contains(n.Name));

        public async Task StartHostsAsync(string hostDll, Dictionary<string, Dictionary<string, string>> environments, CancellationToken ct)
        {
            Log($"run {plan.RunId}: schema {plan.Schema}, exchange {plan.Topology.Exchange}, {plan.Topology.Partitions} quorum partition queues on {string.Join(", ", cluster.Nodes.Select(n => $"{n.Name}:{n.Port}"))}");
            Log($"starting {string.Join(", ", plan.Hosts.Select(h => $"{h.Name} ({h.Roles})"))} together");
            (_hostDll, _environments) = (hostDll, environments);
            var starting = plan.Hosts.ToDictionary(h => h.Name, h => PlatformHost.StartAsync(hostDll, environments[h.Name], ct, HostReadyTimeout));
            Exception? failed = null;
            foreach (var (name, task) in starting)
            {
                try
                {
                    _hosts[name] = await task;
                }
                catch (Exception e) when (e is InvalidOperationException or TimeoutException or OperationCanceledException)
                {
                    failed ??= e;
                }
            }
            if (failed is not null) throw failed;
            foreach (var host in plan.Hosts)
                Log($"{host.Name}: pid {_hosts[host.Name].ProcessId}, {_hosts[host.Name].BaseAddress}, log {_hosts[host.Name].LogPath}");
        }

        public async Task<BenchmarkReport> DrillAsync(CancellationToken ct)
        {
            var api0 = _hosts["api-0"];
            using var operatorApi = new PlatformApi(api0.BaseAddress, api0.OperatorKey);
            var fleet = await MeteringFleet.SetUpAsync(operatorApi, plan.RunId, plan.Deployments, plan.Shape.Publishers, ct);
            Log($"tenant {fleet.TenantId}: {fleet.Deployments.Count} deployments, producers {string.Join(", ", fleet.Producers)}");

            var (registered, _, _) = await WaitForAsync("every metering host registered on every partition", s => s.EveryHostRegistered(MeteringHosts, plan.Topology.Partitions), ct);
            Log($"partitions: {registered.Summary()}");

            await using var observer = new DurableObserver(Services.PostgresConnectionString(), fleet.Deployments, TimeSpan.FromMilliseconds(200), plan.Schema);
            await observer.StartAsync(ct);
            await using var load = await LoadDriver.ConnectAsync(plan.Shape, fleet, plan.Topology.Exchange, () => observer.Records, ct, cluster.Settings, Varied);
            var instances = plan.Hosts.Where(h => !h.Metering).Select(h => new ApiInstance(h.Name, _hosts[h.Name].ProcessId,
                new PlatformApi(_hosts[h.Name].BaseAddress, fleet.TenantKey), new PlatformApi(_hosts[h.Name].BaseAddress, api0.OperatorKey))).ToList();
            var months = new SortedSet<string>(StringComparer.Ordinal) { Month(DateTimeOffset.UtcNow) };
            try
            {
                var probe = new ApiProbe(instances, fleet);
                await using (probe.ConfigureAwait(false))
                {
                    load.Start();
                    _loadStarted = Stopwatch.GetTimestamp();
                    var progress = new Progress(load, observer);
                    Log($"load: {plan.Shape.Rate:#,0} records/s from {plan.Shape.Publishers} publishers for {plan.Load.TotalMinutes:0.#} min");

                    await progress.UntilAsync(_loadStarted, plan.KillHostAt, Log, ct);
                    await KillHostAsync(fleet, ct);
                    await progress.UntilAsync(_loadStarted, plan.KillNodeAt, Log, ct);
                    var killed = await KillNodeAsync(fleet, ct);
                    if (plan.RestartNode)
                    {
                        await progress.UntilAsync(_loadStarted, plan.RestartNodeAt, Log, ct);
                        await RestartNodeAsync(killed, progress, ct);
                    }
                    await progress.UntilAsync(_loadStarted, plan.Load, Log, ct);
                    Log("stopping the load; flushing the publishers");
                    var flushed = await FlushAsync(load);
                    var drained = await LoadProgress.DrainAsync(load, observer, DrainTimeout, ct);
                    Log($"flushed: {flushed}, every confirmed record durable: {drained}");
                }
                months.Add(Month(DateTimeOffset.UtcNow));
                await AddPausesAsync(fleet, ct);
                await CountAsync(fleet, load, observer, instances, months, ct);
                AddApiAnswers(instances);
            }
            finally
            {
                foreach (var instance in instances) instance.Dispose();
            }

            return new BenchmarkReport("scale-out", _figures,
            [
                $"{plan.Load.TotalMinutes:0.#} min of load at {plan.Shape.Rate:#,0} records/s offered ({plan.Shape.Publishers} SDK publishers, batches of ≤ {plan.Shape.MaxBatchRecords} records / {plan.Shape.MaxLinger.TotalMilliseconds:0} ms, ≤ {plan.Shape.InFlight:#,0} records in flight), {plan.Deployments} deployments, every 8th record spilled",
                $"{plan.MeteringHosts} hosts Metering,Daemon (Metering:Instances={plan.MeteringHosts}, each the active consumer of its own share, standby on the rest), {plan.ApiHosts} hosts Api; {plan.Topology.Partitions} partitions as quorum queues on a {cluster.Nodes.Count}-node RabbitMQ cluster; clients list every node (THROUGHPUT_RABBIT_NODES={cluster.Settings.Nodes})",
                $"{Environment.ProcessorCount} cores shared with other work on the machine (load average {LoadAverage()} at the end); times are upper bounds set by rabbitmqctl polls of several seconds each",
            ])
            { Details = _details.ToString() };
        }

        async Task KillHostAsync(MeteringFleet fleet, CancellationToken ct)
        {
            var before = await StateAsync(ct);
            Section($"Partitions before the host kill ({Elapsed()})", before);
            var shared = MeteringHosts.All(h => before.ActiveByHost().ContainsKey(h));
            _figures.Add(new("partitions per host before the host kill", before.Summary(), "every metering host active on its share", shared));

            // The host with the most partitions, so the most move.
            var victim = before.ActiveByHost().OrderByDescending(h => h.Value.Count).ThenBy(h => h.Key, StringComparer.Ordinal).First().Key;
            var survivors = MeteringHosts.Where(h => h != victim).ToList();
            var since = await Counted.LastSequenceAsync(plan.Schema, ct);
            Log($"SIGKILL {victim} (pid {_hosts[victim].ProcessId}), active on {ClusterState.Names(before.ActiveByHost()[victim])}");
            var killedAt = Elapsed();
            await _hosts[victim].KillAsync();
            _kills.Add(($"SIGKILL of {victim}", DateTimeOffset.UtcNow));

            var (after, moved, took) = await WaitForAsync($"partitions active on {string.Join(", ", survivors)}", s => s.AllActiveOn(survivors, _liveNodes, plan.Topology.Partitions), ct);
            Section($"After SIGKILL of {victim} at {killedAt}: partitions moved, seen {took.TotalSeconds:0} s after the kill", after);
            _figures.Add(new($"partitions per host after SIGKILL of {victim}", after.Summary(), "all on the surviving hosts", moved));
            _figures.Add(new("partitions moved, seen within", $"{took.TotalSeconds:0} s"));
            await Task.Delay(TimeSpan.FromSeconds(5), ct);
            var metered = await Counted.DeploymentsMeteredAfterAsync(plan.Schema, fleet.Deployments, since, ct);
            _figures.Add(new("deployments metered after the host kill", $"{metered} of {fleet.Deployments.Count}", "all", metered == fleet.Deployments.Count));
        }

        async Task<BrokerNode> KillNodeAsync(MeteringFleet fleet, CancellationToken ct)
        {
            var before = await StateAsync(ct);
            // The node whose death tests the most: SDK publishers and active consumers must reconnect elsewhere, its leaders move.
            var node = plan.KillNode.Length > 0 ? cluster.Named(plan.KillNode) : cluster.Nodes
                .OrderByDescending(n => (before.PublishersOnNode(n.Name) > 0 ? 1 : 0) + (before.ActiveConsumersOnNode(n.Name) > 0 ? 1 : 0))
                .ThenByDescending(n => before.LeadersOnNode(n.Name) + before.ActiveConsumersOnNode(n.Name)).First();
            Section($"Before the broker node kill ({Elapsed()})", before);
            var since = await Counted.LastSequenceAsync(plan.Schema, ct);
            var leadersBefore = before.LeadersOnNode(node.Name);
            var consumersBefore = before.ActiveConsumersOnNode(node.Name);
            var publishersBefore = before.PublishersOnNode(node.Name);
            Log($"SIGKILL broker node {node.Name}: leader of {leadersBefore} partition queues, channel of {consumersBefore} active consumers, {publishersBefore} SDK publisher connections");
            var killedAt = Elapsed();
            await cluster.KillAsync(node);
            _kills.Add(($"SIGKILL of {node.Name}", DateTimeOffset.UtcNow));
            _liveNodes.Remove(node.Name);

            var survivors = MeteringHosts;
            var (after, recovered, took) = await WaitForAsync($"leaders and active consumers on {string.Join(", ", _liveNodes)}",
                s => s.LeadersOn(_liveNodes) && s.AllActiveOn(survivors, _liveNodes, plan.Topology.Partitions), ct);
            Section($"After SIGKILL of broker node {node.Name} at {killedAt}: leaders and consumers moved, seen {took.TotalSeconds:0} s after the kill", after);
            var leaders = string.Join(", ", cluster.Nodes.Select(n => $"{n.Name} {after.LeadersOnNode(n.Name)}"));
            _figures.Add(new($"broker node SIGKILLed: {node.Name}", $"had {leadersBefore} of {before.Queues.Count} leaders, {consumersBefore} active consumers, {publishersBefore} SDK publishers"));
            _figures.Add(new("queue leaders after the node kill", leaders, $"none on {node.Name}", after.LeadersOn(_liveNodes)));
            _figures.Add(new("partitions per host after the node kill", after.Summary(), "all active, on live nodes", recovered));
            _figures.Add(new("leaders and consumers moved, seen within", $"{took.TotalSeconds:0} s"));
            if (!recovered) await RestartStrandedHostsAsync(after, ct);
            await Task.Delay(TimeSpan.FromSeconds(5), ct);
            var metered = await Counted.DeploymentsMeteredAfterAsync(plan.Schema, fleet.Deployments, since, ct);
            _figures.Add(new("deployments metered after the node kill", $"{metered} of {fleet.Deployments.Count}", "all", metered == fleet.Deployments.Count));
            return node;
        }

        /// <summary>
        /// What an orchestrator's liveness probe would do when a host's partitions stay without a consumer: restart it. The
        /// drill still fails (the figure above is not met); the restart shows that the stranded messages wait in the quorum
        /// queues and are counted once when a consumer returns.
        /// </summary>
        async Task RestartStrandedHostsAsync(ClusterState state, CancellationToken ct)
        {
            var stranded = state.Partitions.Where(p => state.ActiveOf(p) is null).ToList();
            foreach (var name in MeteringHosts)
            {
                Log($"partitions {ClusterState.Names(stranded)} stranded: restarting {name} (pid {_hosts[name].ProcessId}) as an orchestrator would");
                await _hosts[name].DisposeAsync();
                _hosts[name] = await PlatformHost.StartAsync(_hostDll, _environments[name], ct, HostReadyTimeout);
                Log($"{name}: pid {_hosts[name].ProcessId}, log {_hosts[name].LogPath}");
            }
            var (after, recovered, took) = await WaitForAsync($"partitions active on {string.Join(", ", MeteringHosts)} after the restart",
                s => s.AllActiveOn(MeteringHosts, _liveNodes, plan.Topology.Partitions), ct);
            Section($"After restarting {string.Join(", ", MeteringHosts)} ({Elapsed()}): {ClusterState.Names(stranded)} had no consumer", after);
            _figures.Add(new($"partitions stranded after the node kill; after restarting {string.Join(", ", MeteringHosts)}", $"{ClusterState.Names(stranded)}; {after.Summary()} in {took.TotalSeconds:0} s", "all active", recovered));
        }

        async Task RestartNodeAsync(BrokerNode node, Progress progress, CancellationToken ct)
        {
            Log($"starting broker node {node.Name} again");
            var started = Stopwatch.GetTimestamp();
            await progress.WhileAsync(cluster.StartAsync(node), Log, ct);
            _liveNodes.Add(node.Name);
            var (state, back, _) = await WaitForAsync($"{node.Name} back in every quorum, every partition active",
                s => s.Queues.Count == plan.Topology.Partitions && s.Queues.All(q => q.Online.Contains(node.Name)) && s.AllActiveOn(MeteringHosts, _liveNodes, plan.Topology.Partitions), ct);
            var took = Stopwatch.GetElapsedTime(started);
            Section($"After {node.Name} started again ({Elapsed()}, {took.TotalSeconds:0} s to start and rejoin)", state);
            _figures.Add(new($"{node.Name} restarted: queues with every replica online", $"{state.Queues.Count(q => q.Online.Count == cluster.Nodes.Count)} of {state.Queues.Count}; {state.Summary()}", "all, every partition active", back));
        }

        async Task CountAsync(MeteringFleet fleet, LoadDriver load, DurableObserver observer, IReadOnlyList<ApiInstance> instances, IReadOnlyCollection<string> months, CancellationToken ct)
        {
            var handed = load.HandedOverTokens;
            var confirmed = load.Confirmed;
            var (events, eventCount) = await Counted.InEventsAsync(plan.Schema, fleet.Deployments, ct);
            var claims = await Counted.ClaimsAsync(plan.Schema, fleet.Producers, ct);
            var quarantined = await observer.QuarantinedAsync(fleet.Producers, ct);
            List<CountRow> rows = [new("handed over to the SDK", handed, true, true), new("usage events in PostgreSQL", events, true, true)];
            foreach (var instance in instances)
                rows.Add(new($"usage totals via {instance.Name}", await Counted.InUsageTotalsAsync(instance.Tenant, fleet.Deployments, ct), false, false));

            // The invoice drafts come from the async billing projection: wait until each instance's draft holds every record.
            var spillLines = new List<(long Input, long Cached, long Output)>();
            foreach (var instance in instances)
            {
                var started = Stopwatch.GetTimestamp();
                while (true)
                {
                    var (usage, input, cached, output) = await Counted.InDraftsAsync(instance.Tenant, months, ct);
                    if (usage.Records >= confirmed || Stopwatch.GetElapsedTime(started) > BillingTimeout)
                    {
                        spillLines.Add((input, cached, output));
                        rows.Add(new($"billed: invoice draft usage via {instance.Name}", usage, true, false));
                        break;
                    }
                    await Task.Delay(TimeSpan.FromSeconds(2), ct);
                }
            }

            var exactRecords = load.HandedOver == confirmed && rows.All(r => r.Tally.Records == confirmed);
            var exactTokens = rows.All(r => r.Matches(handed));
            var exactSpill = spillLines.All(b => b == (handed.SpilledPrompt - handed.SpilledCached, handed.SpilledCached, handed.SpilledOutput));
            _figures.Add(new("records confirmed by the SDK publishers", $"{confirmed:#,0} (handed over {load.HandedOver:#,0})", "= handed over", load.HandedOver == confirmed));
            _figures.Add(new($"records in events / totals via {string.Join(", ", instances.Select(i => i.Name))} / billed via them",
                string.Join(" / ", rows.Skip(1).Select(r => r.Tally.Records.ToString("#,0", CultureInfo.InvariantCulture))), "all = confirmed", exactRecords));
            _figures.Add(new("prompt, cached, output tokens handed over", $"{handed.Prompt:#,0}, {handed.Cached:#,0}, {handed.Output:#,0}", "equal in every count", exactTokens));
            _figures.Add(new("invoice spillover lines: input, cached, output tokens",
                string.Join(" / ", spillLines.Select(b => $"{b.Input:#,0}, {b.Cached:#,0}, {b.Output:#,0}")), "the spilled records' tokens", exactSpill));
            _figures.Add(new("batches confirmed = dedupe claims", $"{load.BatchesConfirmed:#,0} = {claims:#,0}", "equal (nothing counted twice)", load.BatchesConfirmed == claims));
            _figures.Add(new("records quarantined", quarantined.ToString(CultureInfo.InvariantCulture), "0", quarantined == 0));
            _figures.Add(new("SDK reconnects; republishes; duplicates refused", $"{load.Reconnects}; {load.Republishes}; {await DuplicatesRefusedAsync(ct)}"));

            _details.AppendLine("### Counts").AppendLine();
            _details.AppendLine($"{confirmed:#,0} records confirmed by the SDK publishers; {eventCount:#,0} usage events; {claims:#,0} dedupe claims for {load.BatchesConfirmed:#,0} confirmed batches; {quarantined} quarantined; billed in {string.Join(", ", months)}. Blank: a count that does not hold the column.").AppendLine();
            _details.AppendLine("| count | records | prompt | cached | output | spilled records | spilled prompt | spilled cached | spilled output |");
            _details.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var row in rows) _details.AppendLine(row.Markdown());
            _details.AppendLine();
        }

        /// <summary>The longest a deployment went without a usage event after each kill, against the same before the first kill.</summary>
        async Task AddPausesAsync(MeteringFleet fleet, CancellationToken ct)
        {
            var window = TimeSpan.FromSeconds(30);
            var first = _kills[0].At;
            var steady = await Counted.LongestPauseAsync(plan.Schema, fleet.Deployments, first - window, first - TimeSpan.FromSeconds(1), ct);
            var pauses = new List<string> { $"{steady.TotalSeconds:0.0} s in the {window.TotalSeconds:0} s before the first kill" };
            foreach (var (what, at) in _kills)
                pauses.Add($"{(await Counted.LongestPauseAsync(plan.Schema, fleet.Deployments, at, at + window, ct)).TotalSeconds:0.0} s after the {what}");
            _figures.Add(new("longest pause of any deployment's usage events", string.Join("; ", pauses)));
        }

        /// <summary>Batches the surviving metering hosts refused as already counted (redeliveries after a kill), from their /metrics.</summary>
        async Task<string> DuplicatesRefusedAsync(CancellationToken ct)
        {
            double total = 0;
            foreach (var name in MeteringHosts)
            {
                using var http = new HttpClient { BaseAddress = _hosts[name].BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
                http.DefaultRequestHeaders.Authorization = new("Bearer", _hosts[name].OperatorKey);
                var text = await http.GetStringAsync(new Uri("/metrics", UriKind.Relative), ct);
                total += text.Split('\n').Where(l => l.StartsWith("throughput_metering_duplicate_batches_total", StringComparison.Ordinal))
                    .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
            }
            return total.ToString("#,0", CultureInfo.InvariantCulture);
        }

        void AddApiAnswers(IReadOnlyList<ApiInstance> instances)
        {
            _details.AppendLine("### API instances during the run").AppendLine();
            _details.AppendLine("| instance | pid | usage totals answered (customer API) | admission limits answered (pull API) | failed | last failure |");
            _details.AppendLine("|---|---:|---:|---:|---:|---|");
            foreach (var i in instances)
                _details.AppendLine($"| {i.Name} | {i.ProcessId} | {i.UsageAnswers:#,0} | {i.AdmissionAnswers:#,0} | {i.Failures:#,0} | {i.LastFailure ?? ""} |");
            _details.AppendLine();
            _figures.Add(new("API answers: usage totals/admission pulls/failed",
                string.Join("; ", instances.Select(i => $"{i.Name} {i.UsageAnswers}/{i.AdmissionAnswers}/{i.Failures}")), "each answers both", instances.All(i => i.UsageAnswers > 0 && i.AdmissionAnswers > 0)));
        }

        static async Task<bool> FlushAsync(LoadDriver load)
        {
            try
            {
                await load.StopAsync(DrainTimeout);
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
        }

        async Task<ClusterState> StateAsync(CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            return await cluster.StateAsync(AskedNode, plan.Topology.QueuePrefix);
        }

        /// <summary>Asks the broker until <paramref name="done"/> holds or <see cref="MoveTimeout"/> passes; returns the last state, whether it held, and how long it took.</summary>
        async Task<(ClusterState State, bool Done, TimeSpan Took)> WaitForAsync(string what, Func<ClusterState, bool> done, CancellationToken ct)
        {
            var started = Stopwatch.GetTimestamp();
            while (true)
            {
                ClusterState state;
                try
                {
                    state = await StateAsync(ct);
                }
                catch (InvalidOperationException e)
                {
                    Log($"rabbitmqctl failed, asking again: {e.Message.Split('\n')[0]}");
                    await Task.Delay(TimeSpan.FromSeconds(1), ct);
                    continue;
                }
                var took = Stopwatch.GetElapsedTime(started);
                if (done(state)) return (state, true, took);
                if (took > MoveTimeout)
                {
                    Log($"NOT reached within {MoveTimeout.TotalSeconds:0} s: {what}; {state.Summary()}");
                    return (state, false, took);
                }
                Log($"waiting for {what}: {state.Summary()}");
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
        }

        void Section(string title, ClusterState state)
        {
            Log($"{title}: {state.Summary()}");
            _details.AppendLine($"### {title}").AppendLine();
            var connections = state.ConnectionsByNode(cluster.Nodes.Select(n => n.Name));
            _details.AppendLine($"Asked {state.AskedNode} at {state.At:HH:mm:ss} UTC. Active consumers: {state.Summary()}. Connections: {connections}.").AppendLine();
            _details.AppendLine(state.Table());
            Console.Write(state.Table());
            Console.WriteLine($"connections: {connections}");
        }

        string Elapsed() => _loadStarted == 0 ? "before the load" : $"+{Stopwatch.GetElapsedTime(_loadStarted):mm\\:ss} into the load";

        public async ValueTask DisposeAsync()
        {
            foreach (var host in _hosts.Values) await host.DisposeAsync();
        }
    }

    /// <summary>One place a count lives, and which of the spill columns it holds.</summary>
    sealed record CountRow(string Source, TokenTally Tally, bool SpilledTokens, bool SpilledRecords)
    {
        public bool Matches(TokenTally handed) =>
            (Tally.Prompt, Tally.Cached, Tally.Output) == (handed.Prompt, handed.Cached, handed.Output)
            && (!SpilledTokens || (Tally.SpilledPrompt, Tally.SpilledCached, Tally.SpilledOutput) == (handed.SpilledPrompt, handed.SpilledCached, handed.SpilledOutput))
            && (!SpilledRecords || Tally.SpilledRecords == handed.SpilledRecords);

        public string Markdown()
        {
            var t = Tally;
            var spilledRecords = SpilledRecords ? N(t.SpilledRecords) : "";
            var spilled = SpilledTokens ? $"{N(t.SpilledPrompt)} | {N(t.SpilledCached)} | {N(t.SpilledOutput)}" : " | | ";
            return $"| {Source} | {N(t.Records)} | {N(t.Prompt)} | {N(t.Cached)} | {N(t.Output)} | {spilledRecords} | {spilled} |";
        }

        static string N(long value) => value.ToString("#,0", CultureInfo.InvariantCulture);
    }

    /// <summary>Waits for the next point of the timeline, printing the rates every ten seconds meanwhile.</summary>
    sealed class Progress(LoadDriver load, DurableObserver observer)
    {
        static readonly TimeSpan Every = TimeSpan.FromSeconds(10);
        readonly LoadProgress _rates = new(load, observer);

        public async Task UntilAsync(long started, TimeSpan at, Action<string> log, CancellationToken ct)
        {
            while (Stopwatch.GetElapsedTime(started) < at)
            {
                var left = at - Stopwatch.GetElapsedTime(started);
                await Task.Delay(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1), ct);
                Report(log);
            }
        }

        public async Task WhileAsync(Task work, Action<string> log, CancellationToken ct)
        {
            while (!work.IsCompleted)
            {
                await Task.WhenAny(work, Task.Delay(TimeSpan.FromSeconds(1), ct));
                Report(log);
            }
            await work;
        }

        void Report(Action<string> log)
        {
            if (_rates.SinceLast >= Every) log($"{_rates.Next()}; SDK reconnects {load.Reconnects}, republishes {load.Republishes}");
        }
    }

    static string Month(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM", CultureInfo.InvariantCulture);

    static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    static void Log(string line) => Console.WriteLine($"[scale-out {DateTime.Now:HH:mm:ss}] {line}");
}
