using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>
/// Month-end close at cardinality: N tenants, each with a deployment, onboarded through the API by a host whose clock
/// stands inside a month; then a second host whose clock stands past the month's grace period closes it through
/// <c>POST /v1/finance/closes/{month}</c>. Prints onboarding calls/s, the close's invoices/s and total time, checks
/// the register (one invoice per tenant, numbers 1…N without a gap), then the finance reports' latency, the host's
/// peak RSS and its idle CPU at N tenants. Runs in a fresh schema, dropped afterwards.
/// </summary>
public sealed class CloseBenchmark : IBenchmark
{
    const double TargetInvoicesPerSecond = 1_000;
    const int TargetFromTenants = 10_000;
    const double TargetReadP99Ms = 50;
    const double TargetIdleCores = 0.05;
    const int ReadSamples = 200;
    static readonly DateTimeOffset MonthStart = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public string Name => "close";

    public string Summary => "month-end close of N tenants through the API: invoices/s, total time, register gapless";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("tenants", "tenants onboarded, one deployment each (2000)"),
        ("concurrency", "onboarding calls in flight (8)"),
        ("close-batch", "host Invoicing:CloseBatch (host default)"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var tenants = options.Count("tenants", 2_000);
        var concurrency = options.Count("concurrency", 8);
        var closeBatch = options.Text("close-batch", "");
        var hostDll = Services.PlatformHostDll(options);
        options.EnsureAllRead();
        var runId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var schema = $"bench_close_{runId}";
        var month = MonthStart.ToString("yyyy-MM", CultureInfo.InvariantCulture);
        Dictionary<string, string> Settings(DateTimeOffset clock)
        {
            var settings = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["THROUGHPUT_PG_SCHEMA"] = schema,
                ["Invoicing__AutoIssue"] = "false",
                ["Clock__Start"] = clock.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                // No metering here: a partition topology of its own keeps this host off the platform's queues.
                ["Metering__Exchange"] = $"bench.close.{runId}",
                ["Metering__QueuePrefix"] = $"bench.close.{runId}.p",
                // One operator key onboards every tenant: at the default 50 requests/s per key the limiter, not the
                // platform, would set the onboarding rate (two of every three calls are the operator's).
                ["RequestLimits__PerKeyPerSecond"] = "100000",
                ["RequestLimits__PerKeyBurst"] = "100000",
            };
            if (closeBatch.Length > 0) settings["Invoicing__CloseBatch"] = closeBatch;
            return settings;
        }

        var figures = new List<Figure>();
        var conditions = new List<string> { $"{Number(tenants)} tenants with one 0.5-PTU gpt-4o deployment each, onboarded {concurrency} calls at a time, in schema {schema} (dropped after)" };
        try
        {
            Log($"run {runId}: onboarding {Number(tenants)} tenants in schema {schema}");
            await using (var host = await PlatformHost.StartAsync(hostDll, Settings(MonthStart.AddDays(9)), cancellationToken))
            {
                using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
                var onboarding = await Onboarding.RunAsync(operatorApi, runId, tenants, 1, "gpt-4o", $"bench-{runId}", 0.5m, concurrency, cancellationToken);
                figures.AddRange(onboarding.Figures);
                Log($"onboarded: {onboarding.Figures[0].Value} calls/s");
            }

            Log("closing the month on a host past its grace period");
            await using (var host = await PlatformHost.StartAsync(hostDll, Settings(MonthStart.AddMonths(1).AddDays(4)), cancellationToken))
            {
                figures.AddRange(await CloseAndReadAsync(host, month, tenants, null, conditions, cancellationToken));
            }
            return new BenchmarkReport(Name, figures, conditions);
        }
        finally
        {
            await Services.DropSchemaAsync(schema);
            var rabbit = await RabbitQueues.ConnectAsync(Services.PlatformBroker(), CancellationToken.None);
            await using (rabbit)
            {
                var queues = Enumerable.Range(0, 4).Select(p => $"bench.close.{runId}.p{p}").ToList();
                await rabbit.DeleteAsync(queues, [$"bench.close.{runId}", .. queues]);
            }
        }
    }

    /// <summary>
    /// Closes <paramref name="month"/> on a host whose clock is past its grace period and checks the register (one invoice
    /// per tenant, numbers 1…N), then times the finance reads (and a tenant's draft when given), and takes the host's peak
    /// RSS and its CPU while idle.
    /// </summary>
    public static async Task<List<Figure>> CloseAndReadAsync(PlatformHost host, string month, int tenants, string? draftTenant, List<string> conditions, CancellationToken cancellationToken)
    {
        List<Figure> figures = [];
        using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
        var financeKey = (await operatorApi.PostAsync("/v1/operator/keys", new { role = "Finance", name = "close benchmark" }, cancellationToken)).GetProperty("apiKey").GetString()!;
        using var finance = operatorApi.As(financeKey);
        var closing = Stopwatch.StartNew();
        var started = await finance.CallAsync(HttpMethod.Post, $"/v1/finance/closes/{month}", cancellationToken);
        if (started.Status != System.Net.HttpStatusCode.Accepted) throw new InvalidOperationException($"POST /v1/finance/closes/{month}: {(int)started.Status} {started.Body}");
        JsonElement progress;
        while (true)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken);
            // 404 until the close has written its first progress, after its wait for the drafts.
            if ((await finance.CallAsync(HttpMethod.Get, $"/v1/finance/closes/{month}", cancellationToken)) is { Status: System.Net.HttpStatusCode.OK, Body: { } body }
                && body.GetProperty("finishedAt").ValueKind != JsonValueKind.Null)
            {
                progress = body;
                break;
            }
        }
        var seconds = closing.Elapsed.TotalSeconds;
        var issued = progress.GetProperty("issued").GetInt32();
        // Below thousands of tenants the one wait for the drafts, not the issuing, sets the rate: no target there.
        var atScale = tenants >= TargetFromTenants;
        figures.Add(new Figure("month-end close, invoices/s (request → finished, the one wait for drafts included)", Number(issued / seconds),
            atScale ? $"≥ {Number(TargetInvoicesPerSecond)}" : null, atScale ? issued / seconds >= TargetInvoicesPerSecond : null));
        figures.Add(new Figure("month-end close, total time", $"{seconds:0.0} s for {Number(issued)} invoices"));

        var numbers = new List<long>();
        for (long after = 0; ;)
        {
            var page = await finance.GetAsync($"/v1/finance/invoices?month={month}&limit=5000&after={after}", cancellationToken);
            numbers.AddRange(page.EnumerateArray().Select(i => i.GetProperty("number").GetInt64()));
            if (page.GetArrayLength() < 5000) break;
            after = numbers[^1];
        }
        var gapless = numbers.Count == tenants && numbers.SequenceEqual(Enumerable.Range(1, tenants).Select(n => (long)n));
        figures.Add(new Figure("register: one invoice per tenant, numbers 1…N", gapless ? $"yes: {Number(numbers.Count)}" : $"NO: {Number(numbers.Count)} invoices, numbers {numbers.FirstOrDefault()}…{numbers.LastOrDefault()}",
            "yes", gapless));
        Log($"closed {Number(issued)} invoices in {seconds:0.0} s");

        List<(string Report, string Path)> reads =
        [
            ("utilization", $"/v1/finance/utilization?month={month}"),
            ("sell-through", $"/v1/finance/sell-through?month={month}"),
            ("register, first page of 100", $"/v1/finance/invoices?month={month}&limit=100"),
            ("accrued revenue of the open month", "/v1/finance/accrued"),
        ];
        if (draftTenant is not null) reads.Add(("a tenant's draft of the open month", $"/v1/finance/drafts/{draftTenant}"));
        foreach (var (report, path) in reads)
        {
            var (p50, p99, max) = await LatencyAsync(finance, path, cancellationToken);
            figures.Add(new Figure($"finance read at {Number(tenants)} tenants: {report}, p50 / p99 / max ms", $"{p50:0.0} / {p99:0.0} / {max:0.0}", $"p99 ≤ {TargetReadP99Ms} ms", p99 <= TargetReadP99Ms));
        }
        var rss = host.PeakResidentBytes() / 1_048_576.0;
        figures.Add(new Figure("closing host's peak RSS (VmHWM), MB", Number(rss), "≤ 1,024 MB", rss <= 1024));

        // The same host, its month closed and nothing asked of it: what N tenants and deployments cost when idle.
        await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken);
        var idleFrom = CpuUse.Now(host.ProcessId);
        await Task.Delay(TimeSpan.FromSeconds(20), cancellationToken);
        var idle = CpuUse.Between(idleFrom, CpuUse.Now(host.ProcessId));
        var idleCores = idle.FirstOrDefault(u => u.Role == "platform host").Cores;
        figures.Add(new Figure($"idle host with {Number(tenants)} tenants, cores over 20 s", $"{idleCores:0.000}", $"≤ {TargetIdleCores}", idleCores <= TargetIdleCores));
        conditions.Add("idle 20 s after the close: " + CpuUse.Describe(idle));
        return figures;
    }

    /// <summary>
    /// Sequential reads after a warm-up, one every 25 ms: the latency one finance user sees, not the host's throughput.
    /// </summary>
    static async Task<(double P50, double P99, double Max)> LatencyAsync(PlatformApi api, string path, CancellationToken cancellationToken)
    {
        for (var i = 0; i < 20; i++) await api.GetAsync(path, cancellationToken);
        var samples = new List<double>();
        using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(25));
        for (var i = 0; i < ReadSamples; i++)
        {
            await pace.WaitForNextTickAsync(cancellationToken);
            var started = Stopwatch.GetTimestamp();
            await api.GetAsync(path, cancellationToken);
            samples.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        samples.Sort();
        return (Percentiles.Of(samples, 50), Percentiles.Of(samples, 99), samples[^1]);
    }

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static void Log(string line) => Console.WriteLine($"[close {DateTime.Now:HH:mm:ss}] {line}");
}
