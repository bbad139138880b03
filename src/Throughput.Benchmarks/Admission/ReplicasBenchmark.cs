using System.Diagnostics;
using System.Globalization;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;
using Throughput.Serving;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// K serving processes on one backlogged deployment (#17): each replica is its own OS process (<see cref="ReplicaProcess"/>)
/// with its own registration, key, AdmissionCache, AdmissionFeed (own broker connection and queue), MeteringPublisher (own
/// connection and producer id) and HTTP client, offered its part of 3× the purchased rate. Measures what the customer
/// gets: the rate in 10 s and 60 s windows after the first minute, throttles, the opening burst, each replica's share
/// against its demand, how long a killed replica's share takes to move, and whether metering matched what was admitted.
/// </summary>
public sealed class ReplicasBenchmark : IBenchmark
{
    public string Name => "replicas";

    public string Summary => "K leased serving processes on one deployment offered 3× its rate, even and 80/20: windows, throttles/min, opening burst, shares, rebalance after a kill, metering";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("minutes", "measured minutes per K and split; windows are read after the first (2)"),
        ("replicas", "the values of K, comma-separated (1,2,4,8)"),
        ("splits", "demand splits: even, 80/20 (first replica 80 %, the others share 20 %) (even,80/20)"),
        ("ptu", "PTU of the gpt-4o deployment (20)"),
        ("offered", "offered load as a multiple of the purchased rate (3)"),
        ("request-tokens", "weighted tokens per request, estimate = actual (50)"),
        ("backlog-seconds", "each replica's queue at the start, in seconds of its offered load: the customer arrives backlogged (60)"),
        ("leases", "on: replicas take leases; off: each follows the whole limit, as before #17 (on)"),
        .. Services.HostOptions,
    ];

    const string Model = "gpt-4o";
    static readonly TimeSpan Bin = TimeSpan.FromSeconds(1);
    static readonly TimeSpan RebalanceTimeout = TimeSpan.FromSeconds(10);

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var ks = options.Text("replicas", "1,2,4,8").Split(',').Select(k => int.Parse(k, CultureInfo.InvariantCulture)).ToList();
        var splits = options.Text("splits", "even,80/20").Split(',');
        var measured = options.Minutes("minutes", TimeSpan.FromMinutes(2));
        var ptu = decimal.Parse(options.Text("ptu", "20"), CultureInfo.InvariantCulture);
        var offered = double.Parse(options.Text("offered", "3"), CultureInfo.InvariantCulture);
        var requestTokens = options.Count("request-tokens", 50);
        var backlog = options.Seconds("backlog-seconds", TimeSpan.FromSeconds(60));
        var leases = options.Text("leases", "on") != "off";
        var runId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));
        var topology = new BenchTopology(runId, 4);
        var hostEnvironment = options.HostEnvironment(topology.HostSettings());
        var hostDll = Services.PlatformHostDll(options);
        options.EnsureAllRead();
        if (measured < TimeSpan.FromSeconds(80)) throw new UsageException("--minutes: at least 80 s, so that windows after the first minute exist");

        List<Figure> figures = [];
        try
        {
            await using var host = await PlatformHost.StartAsync(hostDll, hostEnvironment, cancellationToken);
            Log($"run {runId}: host pid {host.ProcessId} on {host.BaseAddress}");
            using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
            foreach (var k in ks)
                foreach (var split in k == 1 ? ["even"] : splits)
                {
                    var shares = Split(split, k);
                    var run = new RunSpec($"{runId}-{k}-{split.Replace('/', '-')}", k, shares, ptu, offered, requestTokens, backlog, leases, measured);
                    Log($"K={k} {split}: {measured.TotalMinutes:0.#} min");
                    figures.AddRange(Figures(await RunOnceAsync(host, operatorApi, topology, run, cancellationToken), $"K={k} {split}"));
                }
        }
        finally
        {
            await topology.RemoveAsync();
        }
        return new BenchmarkReport(Name, figures,
        [
            $"one platform host (all roles), a fresh gpt-4o deployment of {ptu} PTU per K and split ({ptu * 2500:0} weighted tokens/min, burst one minute); {Environment.ProcessorCount} cores shared with whatever else runs",
            $"replicas = separate OS processes (this dll with the `replica` verb), each with its own registration, key, AdmissionCache{(leases ? " (Leases = true)" : "")}, AdmissionFeed, MeteringPublisher and connections",
            $"offered {offered}× the purchased rate in requests of {requestTokens} weighted tokens (estimate = actual), queued when refused, each queue starting with {backlog.TotalSeconds:0} s of its load (backlogged); 80/20: the first replica is offered 80 %, the others share 20 %",
            "windows: 1 s bins of admitted tokens summed over replicas, sliding 10 s and 60 s windows from the end of the first minute; opening burst: the most admitted above the rate in the first 10 s, in bursts; throttles: deployment_throttled events of the deployment",
            "shares: each replica's lease (tokens/min) against its max-min fair share of what it wants (its offered rate, or any share while its queue holds requests and for 2 s after), both averaged over per-second samples after the first minute; rebalance: a replica killed (no renewal, no release) until the survivors' leases sum to the purchase",
        ]);
    }

    static double[] Split(string split, int k) => split switch
    {
        "even" => [.. Enumerable.Repeat(1.0 / k, k)],
        "80/20" when k > 1 => [0.8, .. Enumerable.Repeat(0.2 / (k - 1), k - 1)],
        _ => throw new UsageException($"--splits: unknown split '{split}' (even, 80/20)"),
    };

    sealed record RunSpec(string Id, int K, double[] Shares, decimal Ptu, double Offered, int RequestTokens, TimeSpan Backlog, bool Leases, TimeSpan Measured);

    const double ShareTolerance = 0.95;

    sealed record RunResult(RunSpec Spec, long Rate, long Burst, long[] Bins, long Throttles, double[] LeaseShares, long[] Fair, double? RebalanceSeconds,
        long Admitted, decimal Metered, long Records, long MeteredRecords);

    static async Task<RunResult> RunOnceAsync(PlatformHost host, PlatformApi operatorApi, BenchTopology topology, RunSpec spec, CancellationToken ct)
    {
        var tenantId = $"bench-{spec.Id}";
        var region = $"bench-{spec.Id}";
        await operatorApi.PostAsync("/v1/operator/tenants", new { tenantId, name = "Replicas benchmark", currency = "USD" }, ct);
        var tenantKey = (await operatorApi.PostAsync($"/v1/operator/tenants/{tenantId}/keys", null, ct)).GetProperty("apiKey").GetString()!;
        await operatorApi.PutAsync($"/v1/operator/pools/{Model}/{region}", new { capacityPtu = spec.Ptu }, ct);
        using var tenant = operatorApi.As(tenantKey);
        var deployment = (await tenant.PostAsync("/v1/deployments", new { name = "replicated", model = Model, region, type = "Global", ptu = spec.Ptu }, ct)).GetProperty("id").GetString()!;

        var replicas = new List<ReplicaProcess>();
        try
        {
            var limit = await LimitAsync(operatorApi, deployment, ct);
            var bins = (int)Math.Ceiling((spec.Measured + RebalanceTimeout + TimeSpan.FromSeconds(5)) / Bin);
            for (var i = 0; i < spec.K; i++)
            {
                var producer = $"bench-{spec.Id}-r{i}";
                var credentials = await NodeCredentials.RegisterAsync(operatorApi, producer, region, tenantId, ct);
                var key = (await operatorApi.PostAsync("/v1/operator/keys", new { role = "ServingNode", name = producer }, ct)).GetProperty("apiKey").GetString()!;
                replicas.Add(await ReplicaProcess.StartAsync(new ReplicaSpec(host.BaseAddress, key, credentials.On(BrokerSettings.FromEnvironment()).Uri, producer, region,
                    Model, deployment, topology.Exchange, spec.Offered * spec.Shares[i] * limit.TokensPerMinute / 60.0, spec.RequestTokens, spec.Backlog.TotalSeconds,
                    spec.Leases, bins), ct));
            }
            var go = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 200;
            foreach (var replica in replicas) await replica.GoAsync(go);
            var offered = spec.Shares.Select(s => (long)(spec.Offered * s * limit.TokensPerMinute)).ToArray();
            var (leaseShares, fair) = await SampleSharesAsync(replicas, offered, limit.TokensPerMinute, spec.Measured, ct);
            double? rebalance = null;
            var results = new Dictionary<ReplicaProcess, ReplicaResult>();
            if (spec.K > 1 && spec.Leases)
            {
                // The biggest demand in 80/20, the last replica when even: the survivors must take what it held.
                var victim = spec.Shares[0] > spec.Shares[^1] ? replicas[0] : replicas[^1];
                var killedAt = Stopwatch.GetTimestamp();
                var killed = victim.StopAsync(kill: true);
                var survivors = replicas.Where(r => r != victim).ToList();
                while (Stopwatch.GetElapsedTime(killedAt) < RebalanceTimeout)
                {
                    if (survivors.Sum(r => Math.Max(0, r.Lease)) >= limit.TokensPerMinute - spec.K)
                    {
                        rebalance = Stopwatch.GetElapsedTime(killedAt).TotalSeconds;
                        break;
                    }
                    await Task.Delay(20, ct);
                }
                results[victim] = await killed;
            }
            foreach (var replica in replicas.Where(r => !results.ContainsKey(r))) results[replica] = await replica.StopAsync();
            var binsTotal = new long[bins];
            foreach (var result in results.Values)
                for (var b = 0; b < bins; b++) binsTotal[b] += result.Bins[b];
            var admitted = results.Values.Sum(r => r.AdmittedTokens);
            var records = results.Values.Sum(r => r.Records);
            var (metered, meteredRecords) = await MeteredAsync(tenant, deployment, records, ct);
            return new RunResult(spec, limit.TokensPerMinute, limit.BurstTokens, binsTotal, await ThrottlesAsync(deployment, ct), leaseShares, fair, rebalance,
                admitted, metered, records, meteredRecords);
        }
        finally
        {
            foreach (var replica in replicas) await replica.DisposeAsync();
        }
    }

    static async Task<(long TokensPerMinute, long BurstTokens)> LimitAsync(PlatformApi operatorApi, string deployment, CancellationToken ct)
    {
        var limit = await operatorApi.GetAsync($"/v1/admission/{deployment}", ct);
        return (limit.GetProperty("tokensPerMinute").GetInt64(), limit.GetProperty("burstTokens").GetInt64());
    }

    /// <summary>Waits (up to a minute) until the platform has metered every record published, then reads what it metered.</summary>
    static async Task<(decimal Tokens, long Records)> MeteredAsync(PlatformApi tenant, string deployment, long records, CancellationToken ct)
    {
        var deadline = Stopwatch.GetTimestamp() + 60 * Stopwatch.Frequency;
        while (true)
        {
            var bucket = (await tenant.GetAsync($"/v1/deployments/{deployment}", ct)).GetProperty("bucket");
            var (tokens, metered) = (bucket.GetProperty("weightedTokens").GetDecimal(), bucket.GetProperty("meteredRecords").GetInt64());
            if (metered >= records || Stopwatch.GetTimestamp() > deadline) return (tokens, metered);
            await Task.Delay(250, ct);
        }
    }

    static async Task<long> ThrottlesAsync(string deployment, CancellationToken ct)
    {
        await using var database = Npgsql.NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand("select count(*) from throughput.mt_events where type = 'deployment_throttled' and stream_id = @stream");
        command.Parameters.AddWithValue("stream", deployment);
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>
    /// Waits out the measured time, sampling every second after the first minute each replica's lease and its max-min fair
    /// share of what it wants at that instant: its offered rate once its queue has been drained for <see cref="ReplicaProcess.Moves"/>
    /// (the time a share it no longer uses has to move), any share while requests wait in its queue (each starts with a
    /// backlog, and a small replica granted more than its offered rate drains it, which takes minutes). Answers the averages:
    /// one instant's lease swings with the last renewals.
    /// </summary>
    static async Task<(double[] Shares, long[] Fair)> SampleSharesAsync(List<ReplicaProcess> replicas, long[] offered, long rate, TimeSpan measured, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var shares = new double[replicas.Count];
        var fair = new double[replicas.Count];
        var samples = 0;
        await Task.Delay(TimeSpan.FromMinutes(1), ct);
        while (Stopwatch.GetElapsedTime(started) < measured)
        {
            var wants = replicas.Select((r, i) => r.Backlogged ? rate : offered[i]).ToArray();
            var fairNow = FairShares(wants, rate);
            for (var i = 0; i < replicas.Count; i++) (shares[i], fair[i]) = (shares[i] + replicas[i].Lease, fair[i] + fairNow[i]);
            if (samples++ % 10 == 0)
                Log(string.Join(", ", replicas.Select((r, i) => $"r{i} lease {r.Lease} demand {r.Demand}{(r.Backlogged ? " backlogged" : "")} fair {fairNow[i]}")));
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
        }
        samples = Math.Max(1, samples);
        return ([.. shares.Select(s => s / samples)], [.. fair.Select(f => (long)Math.Round(f / samples))]);
    }

    /// <summary>Max-min fair shares of the rate for these demands: what no replica with demand should get less of.</summary>
    static long[] FairShares(long[] demands, long rate)
    {
        var fair = new long[demands.Length];
        var left = rate;
        var waiting = demands.Length;
        foreach (var i in Enumerable.Range(0, demands.Length).OrderBy(i => demands[i]))
        {
            fair[i] = Math.Min(demands[i], left / waiting--);
            left -= fair[i];
        }
        return fair;
    }

    static IEnumerable<Figure> Figures(RunResult r, string label)
    {
        var perSecond = r.Rate / 60.0;
        var measuredBins = (int)(r.Spec.Measured / Bin);
        double Window(int from, int length) => r.Bins.Skip(from).Take(length).Sum() / (perSecond * length);
        List<double> Windows(int length) => [.. Enumerable.Range(60, Math.Max(0, measuredBins - 60 - length + 1)).Select(from => Window(from, length))];
        var tens = Windows(10);
        var sixties = Windows(60);
        long cumulative = 0;
        var opening = Enumerable.Range(0, 10).Max(b => (cumulative += r.Bins[b]) - perSecond * (b + 1)) / r.Burst;
        var throttlesPerMinute = r.Throttles / r.Spec.Measured.TotalMinutes;
        // 5 % below the fair share is sampling, not unfairness: both sides are per-second samples of estimates that move.
        var sharesMet = r.Spec.Leases && r.LeaseShares.Zip(r.Fair).All(p => p.First >= ShareTolerance * p.Second);
        var exact = r.Metered == r.Admitted && r.MeteredRecords == r.Records;
        string Range(List<double> w) => w.Count == 0 ? "n/a" : $"{w.Min():0.000}–{w.Max():0.000}";
        yield return new($"{label}: steady-state ratio (after the first minute)", $"{Window(60, measuredBins - 60):0.0000}");
        yield return new($"{label}: 10 s windows (× purchased)", Range(tens), "0.90–1.10", tens.Count > 0 && tens.Min() >= 0.90 && tens.Max() <= 1.10);
        yield return new($"{label}: 60 s windows (× purchased)", Range(sixties), "0.98–1.02", sixties.Count > 0 && sixties.Min() >= 0.98 && sixties.Max() <= 1.02);
        yield return new($"{label}: throttles/min", $"{throttlesPerMinute:0.00} ({r.Throttles})", "≤ 1", throttlesPerMinute <= 1);
        yield return new($"{label}: opening burst (× one burst)", $"{opening:0.00}", "≤ 1.1", opening <= 1.1);
        yield return new($"{label}: share / fair share of demand per replica (tokens/min)",
            string.Join(", ", r.LeaseShares.Zip(r.Fair).Select(p => $"{p.First:0}/{p.Second}")), $"each ≥ {ShareTolerance:0.00} × its fair share", r.Spec.Leases ? sharesMet : null);
        if (r.Spec.K > 1)
            yield return new($"{label}: share moved after a replica was killed", r.RebalanceSeconds is { } s ? $"{s:0.00} s" : "not within 10 s", "≤ 2 s", r.RebalanceSeconds <= 2);
        yield return new($"{label}: metering (admitted = metered)", $"{r.Admitted:N0} / {r.Metered:N0} tokens, {r.Records:N0} / {r.MeteredRecords:N0} records", "exact", exact);
    }

    static void Log(string line) => Console.WriteLine($"[replicas {DateTime.Now:HH:mm:ss}] {line}");
}
