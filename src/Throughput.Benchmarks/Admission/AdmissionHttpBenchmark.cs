using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// The admission pull API under a constant request rate on loopback: a platform host of the benchmark's own (API role
/// only: no metering consumers, no projection daemon), N deployments, a ServingNode key, and an open-loop load.
/// </summary>
public sealed class AdmissionHttpBenchmark : IBenchmark
{
    const double TargetP99Ms = 2;
    const int TargetRate = 10_000;
    const double TargetP99OfBare = 1.25;
    static readonly TimeSpan ProgressEvery = TimeSpan.FromSeconds(5);
    static readonly TimeSpan DrainPatience = TimeSpan.FromSeconds(10);

    public string Name => "admission-http";

    public string Summary => "admission HTTP API (POST /v1/admission/{id}/check, GET /v1/admission/{id}) at a constant request rate, open loop: p50/p90/p99/max";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("rate", "requests/s offered, constant, whatever the answers do (10000)"),
        ("duration", "seconds measured after the warm-up (20)"),
        ("prime", "seconds of closed-loop requests on every connection first, so the host's JIT tiers up without a backlog (10)"),
        ("warmup", "seconds of the open-loop load before measuring (10)"),
        ("call", "check | get | mix (check and get alternately) (check)"),
        ("deployments", "deployments the requests go round-robin over (100)"),
        ("connections", "HTTP/1.1 keep-alive connections, one request in flight on each; beyond them requests wait for a free one, still timed from their due time (64)"),
        ("serving-node-rate", "host RequestLimits:ServingNodePerSecond, so its rate limiter never shapes the run (1000000)"),
        ("host-env", "NAME=VALUE added to the host's environment; repeatable (e.g. DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0)"),
        ("timeline", "file to write every request's due time, latency, lateness and status to (none)"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
        ("ceiling", "after the platform, the same load against a bare Kestrel server answering the same-sized JSON: true | false (true)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var plan = new LoadPlan(options.Count("rate", TargetRate), options.Seconds("warmup", TimeSpan.FromSeconds(10)),
            options.Seconds("duration", TimeSpan.FromSeconds(20)), options.Count("connections", 64), ParseCall(options.Text("call", "check")));
        var deploymentCount = options.Count("deployments", 100);
        var hostEnvironment = options.HostEnvironment(new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["Host__Roles"] = "Api",
            ["RequestLimits__ServingNodePerSecond"] = options.Count("serving-node-rate", 1_000_000).ToString(CultureInfo.InvariantCulture),
        });
        var timeline = options.Text("timeline", "");
        var prime = options.Seconds("prime", TimeSpan.FromSeconds(10));
        var hostDll = Services.PlatformHostDll(options);
        var ceiling = options.Text("ceiling", "true") == "true";
        options.EnsureAllRead();

        var runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        Log($"run {runId}: starting the platform host ({string.Join(' ', hostEnvironment.Select(e => $"{e.Key}={e.Value}"))})");
        await using var host = await PlatformHost.StartAsync(hostDll, hostEnvironment, cancellationToken);
        Log($"host pid {host.ProcessId} ready on {host.BaseAddress} (log: {host.LogPath})");
        using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
        var fleet = await AdmissionFleet.SetUpAsync(operatorApi, runId, "gpt-4o-mini", deploymentCount, 100, registerProducer: false, cancellationToken);
        Log($"tenant {fleet.TenantId}: {fleet.Deployments.Count} deployments of {fleet.Model} at 100 PTU; {plan.Call} at {Number(plan.Rate)}/s over {plan.Connections} connections");

        using var load = new OpenLoopLoad(plan, host.BaseAddress, fleet.ServingNodeKey, fleet.Deployments);
        Log($"priming {plan.Connections} connections closed loop for {prime.TotalSeconds:0} s");
        var primeStart = CpuUse.Now(host.ProcessId);
        var closedLoop = load.Prime(prime);
        var primeCpu = CpuUse.Between(primeStart, CpuUse.Now(host.ProcessId));
        Log($"closed loop answered {Number(closedLoop)}/s; open-loop warm-up for {plan.Warmup.TotalSeconds:0} s");
        var drained = false;
        var loop = new Thread(() => drained = load.Run(DrainPatience, cancellationToken)) { IsBackground = true, Name = "admission-load" };
        loop.Start();
        var peak = await WatchAsync(load, plan.Warmup, 0, cancellationToken);
        var before = CpuUse.Now(host.ProcessId);
        Log($"measuring for {plan.Duration.TotalSeconds:0} s");
        var hiccups = Hiccups.Start();
        peak = await WatchAsync(load, plan.Duration, peak, cancellationToken);
        var machine = hiccups.Stop();
        var after = CpuUse.Now(host.ProcessId);
        loop.Join();
        if (timeline.Length > 0) load.WriteTimeline(timeline);
        if (load.Overloaded) Log($"stopped early: more than {Number(plan.MaxOutstanding)} requests unanswered");
        var measured = load.Measured();
        var report = Report(measured, plan, fleet, hostEnvironment, CpuUse.Between(before, after), drained, load.Overloaded, peak, (closedLoop, primeCpu), machine);
        if (!ceiling) return report;

        var bodyBytes = await AnswerBytesAsync(host.BaseAddress, fleet, plan.Call, cancellationToken);
        await host.DisposeAsync(); // the bare server gets the machine as the host had it
        var bare = await MeasureBareAsync(plan, bodyBytes, fleet.Deployments, prime, cancellationToken);
        return WithCeiling(report, measured, bare, bodyBytes);
    }

    /// <summary>The length of the platform's answer body to the call the load makes, for the bare server to answer alike.</summary>
    static async Task<int> AnswerBytesAsync(Uri baseAddress, AdmissionFleet fleet, AdmissionCall call, CancellationToken ct)
    {
        using var http = new HttpClient { BaseAddress = baseAddress };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fleet.ServingNodeKey);
        var path = $"/v1/admission/{fleet.Deployments[0]}";
        using var answer = call == AdmissionCall.Get
            ? await http.GetAsync(new Uri(path, UriKind.Relative), ct)
            : await http.PostAsync(new Uri(path + "/check", UriKind.Relative), new StringContent("""{"estimatedTokens":1000}""", System.Text.Encoding.UTF8, "application/json"), ct);
        answer.EnsureSuccessStatusCode();
        return (await answer.Content.ReadAsByteArrayAsync(ct)).Length;
    }

    /// <summary>The same plan, generator and connections against the bare Kestrel server; primed closed loop as the host was.</summary>
    static async Task<BareRun> MeasureBareAsync(LoadPlan plan, int bodyBytes, IReadOnlyList<string> deployments, TimeSpan prime, CancellationToken ct)
    {
        await using var bare = await BareAdmission.StartAsync(bodyBytes, ct);
        Log($"bare Kestrel pid {bare.ProcessId} on {bare.BaseAddress}, answering {bodyBytes} bytes; priming {prime.TotalSeconds:0} s, then {Number(plan.Rate)}/s open loop");
        using var load = new OpenLoopLoad(plan, bare.BaseAddress, "bare", deployments);
        var closedLoop = load.Prime(prime);
        var drained = false;
        var loop = new Thread(() => drained = load.Run(DrainPatience, ct)) { IsBackground = true, Name = "admission-load-bare" };
        loop.Start();
        await WatchAsync(load, plan.Warmup, 0, ct);
        var before = CpuUse.Now(bare.ProcessId, "bare Kestrel");
        var hiccups = Hiccups.Start();
        await WatchAsync(load, plan.Duration, 0, ct);
        var machine = hiccups.Stop();
        var cpu = CpuUse.Between(before, CpuUse.Now(bare.ProcessId, "bare Kestrel"));
        loop.Join();
        return new BareRun(load.Measured(), closedLoop, cpu, machine, drained && !load.Overloaded);
    }

    static BenchmarkReport WithCeiling(BenchmarkReport report, LoadResult platform, BareRun bare, int bodyBytes)
    {
        var ok = platform.OkLatencyMs;
        var bareOk = bare.Result.OkLatencyMs;
        var p99 = new Ceiling(Percentiles.Of(ok, 99), Percentiles.Of(bareOk, 99)).AtMost("latency p99: platform / bare Kestrel", TargetP99OfBare, Ms);
        return report with
        {
            Figures =
            [
                p99 with { Met = p99.Met == true && bare.Complete && platform.ErrorCount == 0 },
                new Ceiling(Percentiles.Of(ok, 50), Percentiles.Of(bareOk, 50)).Beside("latency p50: platform / bare Kestrel", Ms),
                new Ceiling(Percentiles.Of(ok, 99.9), Percentiles.Of(bareOk, 99.9)).Beside("latency p99.9: platform / bare Kestrel", Ms),
                .. report.Figures,
                new("bare Kestrel: requests/s sent; answered 2xx / errors; closed-loop ceiling", $"{Number(bare.Result.SentPerSecond)}; {Number(bareOk.Count)} / {Number(bare.Result.ErrorCount)}; {Number(bare.ClosedLoop)}/s"),
                new("bare Kestrel: machine hiccups while measuring", $"{bare.Machine.Delays}; {bare.Machine.Share}"),
            ],
            Conditions =
            [
                .. report.Conditions,
                $"ceiling: after the host stopped, a bare Kestrel server (this benchmark's dll as a child process, minimal API, no authentication, no rate limiter, no platform code) answering every admission route with {bodyBytes} bytes of JSON, the platform's answer's size; the same generator and plan: same rate, warm-up, duration and connections; CPU cores while measuring: {CpuUse.Describe(bare.Cpu)}",
            ],
        };
    }

    /// <summary>The bare server's run: what the generator measured, its closed-loop ceiling, the cores used, the machine's stalls meanwhile.</summary>
    sealed record BareRun(LoadResult Result, double ClosedLoop, IReadOnlyList<(string Role, double Cores)> Cpu, HiccupFigures Machine, bool Complete);

    BenchmarkReport Report(LoadResult result, LoadPlan plan, AdmissionFleet fleet, IReadOnlyDictionary<string, string> hostEnvironment,
        IReadOnlyList<(string Role, double Cores)> cpu, bool drained, bool overloaded, double peakAnswered, (double Rate, IReadOnlyList<(string Role, double Cores)> Cpu) closedLoop,
        HiccupFigures machine)
    {
        var ok = result.OkLatencyMs;
        var p99 = Percentiles.Of(ok, 99);
        var rateHeld = result.SentPerSecond >= TargetRate * 0.99 && result.ErrorCount == 0 && !overloaded;
        var endpoint = plan.Call switch
        {
            AdmissionCall.Check => "POST /v1/admission/{id}/check",
            AdmissionCall.Get => "GET /v1/admission/{id}",
            _ => "check and GET alternately",
        };
        return new BenchmarkReport(Name,
        [
            new("requests/s sent (open loop, offered " + Number(plan.Rate) + "/s)", Number(result.SentPerSecond) + (overloaded ? $" (STOPPED: > {Number(plan.MaxOutstanding)} unanswered)" : ""), "≥ 10,000", result.SentPerSecond >= TargetRate * 0.99 && !overloaded),
            new($"answered/s closed loop on {plan.Connections} connections (priming): the host's ceiling here", Number(closedLoop.Rate)),
            new("CPU per answered request closed loop: host / load generator", $"{PerRequest(closedLoop.Cpu, "platform host", closedLoop.Rate)} / {PerRequest(closedLoop.Cpu, "benchmark", closedLoop.Rate)}"),
            new("answered/s open loop, highest over a progress interval (warm-up included)", Number(peakAnswered)),
            new("latency p50 / p90", $"{Ms(Percentiles.Of(ok, 50))} / {Ms(Percentiles.Of(ok, 90))}"),
            new("latency p99", Ms(p99), "≤ 2 ms at ≥ 10,000/s", p99 <= TargetP99Ms && rateHeld),
            new("latency p99.9 / max", $"{Ms(Percentiles.Of(ok, 99.9))} / {Ms(ok.Count == 0 ? double.NaN : ok[^1])}"),
            new("answered 2xx / errors", $"{Number(ok.Count)} / {Number(result.ErrorCount)}{Errors(result)}", "0 errors", result.ErrorCount == 0),
            new("CPU per answered request open loop: host / load generator", overloaded ? "n/a" : $"{PerRequest(cpu, "platform host", ok.Count / plan.Duration.TotalSeconds)} / {PerRequest(cpu, "benchmark", ok.Count / plan.Duration.TotalSeconds)}"),
            new("machine hiccups while measuring: a 1 ms sleep's extra delay p99 / p99.9 / max; share of the time in hiccups ≥ 1 ms", $"{machine.Delays}; {machine.Share}"),
            new("send lateness p50 / p99 / max (inside the latency)", $"{Ms(Percentiles.Of(result.SendLagMs, 50))} / {Ms(Percentiles.Of(result.SendLagMs, 99))} / {Ms(result.SendLagMs.Count == 0 ? double.NaN : result.SendLagMs[^1])}"),
        ],
        [
            $"{endpoint}, {Number(result.Requests)} requests due over {plan.Duration.TotalSeconds:0} s after {plan.Warmup.TotalSeconds:0} s warm-up, round-robin over {fleet.Deployments.Count} deployments, {plan.Connections} HTTP/1.1 keep-alive connections from a raw-socket client on one thread (epoll; prepared request bytes, one request in flight per connection, answer read in full; primed closed loop before the warm-up), loopback 127.0.0.1, {Environment.ProcessorCount} cores",
            "open loop: request i is due at start + i/rate and sent then whatever earlier answers did; latency = answer read in full − due time, so the generator's own lateness in sending (shown; a late wake-up or no free connection) counts against the host",
            "host " + string.Join(" ", hostEnvironment.Select(e => $"{e.Key}={e.Value}")) + " (the per-key rate limiter still runs on every request; its budget is raised so it never refuses the load)",
            $"CPU cores used while priming: {CpuUse.Describe(closedLoop.Cpu)}; while measuring: {CpuUse.Describe(cpu)} (other = anything else on the machine, e.g. builds){(drained ? "" : $"; some answers still missing {DrainPatience.TotalSeconds:0} s after the last send")}",
        ]);
    }

    /// <summary>Prints the rates every few seconds; returns the highest answered rate of an interval, or <paramref name="peak"/> if higher.</summary>
    static async Task<double> WatchAsync(OpenLoopLoad load, TimeSpan span, double peak, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var last = (At: started, Sent: load.Sent, Answered: load.Answered);
        while (Stopwatch.GetElapsedTime(started) < span && !load.Overloaded)
        {
            var left = span - Stopwatch.GetElapsedTime(started);
            if (left < TimeSpan.FromMilliseconds(1)) break; // Task.Delay would return at once and the loop would print empty intervals
            await Task.Delay(left < ProgressEvery ? left : ProgressEvery, ct);
            var now = (At: Stopwatch.GetTimestamp(), Sent: load.Sent, Answered: load.Answered);
            var s = Stopwatch.GetElapsedTime(last.At, now.At).TotalSeconds;
            Log($"sent {Number((now.Sent - last.Sent) / s)}/s, answered {Number((now.Answered - last.Answered) / s)}/s, outstanding {now.Sent - now.Answered}");
            if (s >= 1) peak = Math.Max(peak, (now.Answered - last.Answered) / s);
            last = now;
        }
        return peak;
    }

    /// <summary>CPU time a role spent per answered request: what 10,000 requests/s cost in cores, whatever else the machine runs.</summary>
    static string PerRequest(IReadOnlyList<(string Role, double Cores)> cpu, string role, double answeredPerSecond) =>
        answeredPerSecond <= 0 ? "n/a" : $"{cpu.Where(c => c.Role == role).Sum(c => c.Cores) * 1e6 / answeredPerSecond:0} µs";

    static AdmissionCall ParseCall(string text) => Enum.TryParse<AdmissionCall>(text, ignoreCase: true, out var call)
        ? call
        : throw new UsageException($"--call '{text}': check, get or mix");

    static string Errors(LoadResult result) => result.ErrorCount == 0
        ? ""
        : " (" + string.Join(", ", result.Errors.Select(e => $"{(e.Key switch { -1 => "no answer", 0 => "unanswered at the end", _ => e.Key.ToString(CultureInfo.InvariantCulture) })}: {e.Value}")) + ")";

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static string Ms(double milliseconds) => double.IsNaN(milliseconds) ? "n/a" : $"{milliseconds.ToString("0.00", CultureInfo.InvariantCulture)} ms";

    static void Log(string line) => Console.WriteLine($"[admission-http {DateTime.Now:HH:mm:ss}] {line}");
}
