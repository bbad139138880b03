using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;

namespace Throughput.Benchmarks.Admission;

/// <summary>Which admission call the load makes: the per-request check, the limit read, or both alternately.</summary>
public enum AdmissionCall
{
    Check,
    Get,
    Mix,
}

/// <summary>A constant request rate for a warm-up and a measured span, spread over several HTTP clients (each its own connection pool).</summary>
public sealed record LoadPlan(int Rate, TimeSpan Warmup, TimeSpan Duration, int Clients, int Connections, AdmissionCall Call)
{
    /// <summary>More requests than this unanswered (five seconds of load) means the host cannot keep up: the run stops instead of piling up requests.</summary>
    public long MaxOutstanding => Math.Max(1000, Rate * 5L);

    public long WarmupRequests => (long)(Rate * Warmup.TotalSeconds);

    public long MeasuredRequests => (long)(Rate * Duration.TotalSeconds);

    public long TotalRequests => WarmupRequests + MeasuredRequests;
}

/// <summary>
/// An open-loop load generator: request i is due at start + i / rate, whatever happened to the requests before it. One
/// scheduler thread sends each request when it is due (never waiting for answers); its latency runs from the moment it was
/// DUE to the moment its answer was read in full, so a stalled server or a late scheduler shows up in the latency instead
/// of silently lowering the rate (no coordinated omission).
/// </summary>
public sealed class OpenLoopLoad : IDisposable
{
    static readonly byte[] CheckBody = Encoding.UTF8.GetBytes("""{"estimatedTokens":1000}""");
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    readonly LoadPlan _plan;
    readonly HttpClient[] _clients;
    readonly Uri[] _checkUris;
    readonly Uri[] _getUris;
    readonly long[] _latencyTicks; // by request index; 0 = no answer (yet)
    readonly long[] _lagTicks; // by request index: how late the scheduler sent it
    readonly int[] _status; // by request index; -1 = failed without an HTTP answer
    long _started;
    long _sent;
    long _answered;
    volatile bool _overloaded;

    public OpenLoopLoad(LoadPlan plan, Uri baseAddress, string servingNodeKey, IReadOnlyList<string> deployments)
    {
        _plan = plan;
        var connectionsPerClient = Math.Max(1, plan.Connections / plan.Clients);
        _clients = [.. Enumerable.Range(0, plan.Clients).Select(_ => Client(baseAddress, servingNodeKey, connectionsPerClient))];
        _checkUris = [.. deployments.Select(d => new Uri(baseAddress, $"/v1/admission/{d}/check"))];
        _getUris = [.. deployments.Select(d => new Uri(baseAddress, $"/v1/admission/{d}"))];
        _latencyTicks = new long[plan.TotalRequests];
        _lagTicks = new long[plan.TotalRequests];
        _status = new int[plan.TotalRequests];
    }

    public long Sent => Interlocked.Read(ref _sent);

    public long Answered => Interlocked.Read(ref _answered);

    /// <summary>The run stopped early: more than <see cref="LoadPlan.MaxOutstanding"/> requests were waiting for answers.</summary>
    public bool Overloaded => _overloaded;

    /// <summary>
    /// Before the timed load: every connection opened and the host's request path compiled to its final tier, closed loop
    /// (each connection sends its next request when the last is answered) so a cold host is never buried under a backlog
    /// it could not yet serve. Returns the requests/s answered meanwhile: the most the host gives these connections.
    /// </summary>
    public async Task<double> PrimeAsync(TimeSpan span, CancellationToken cancellationToken)
    {
        var connectionsPerClient = Math.Max(1, _plan.Connections / _plan.Clients);
        var deadline = Stopwatch.GetTimestamp() + (long)(span.TotalSeconds * Stopwatch.Frequency);
        long answered = 0;
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(_clients.SelectMany(client => Enumerable.Range(0, connectionsPerClient).Select(async c =>
        {
            for (var i = c; Stopwatch.GetTimestamp() < deadline; i += connectionsPerClient)
            {
                using var request = Request(i);
                using var response = await client.SendAsync(request, cancellationToken);
                Interlocked.Increment(ref answered);
            }
        })));
        return answered / Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    /// <summary>Sends every request of the plan on time; returns once the last one is sent (answers may still be on their way).</summary>
    public void Run(CancellationToken cancellationToken)
    {
        var ticksPerRequest = (double)Stopwatch.Frequency / _plan.Rate;
        PreciseSleep.TightenTimerSlack();
        _started = Stopwatch.GetTimestamp();
        for (long i = 0; i < _plan.TotalRequests && !cancellationToken.IsCancellationRequested; i++)
        {
            var due = _started + (long)(i * ticksPerRequest);
            WaitUntil(due);
            if (Sent - Answered > _plan.MaxOutstanding)
            {
                _overloaded = true;
                return;
            }
            _ = SendAsync(i, due);
        }
    }

    /// <summary>Waits until every request sent has its answer (or failed), at most <paramref name="patience"/>.</summary>
    public async Task<bool> DrainAsync(TimeSpan patience)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(patience.TotalSeconds * Stopwatch.Frequency);
        while (Answered < Sent)
        {
            if (Stopwatch.GetTimestamp() > deadline) return false;
            await Task.Delay(10);
        }
        return true;
    }

    /// <summary>What the measured requests (those due after the warm-up) got.</summary>
    public LoadResult Measured()
    {
        var first = _plan.WarmupRequests;
        var last = Math.Max(first, Math.Min(Sent, _plan.TotalRequests));
        var ok = new List<double>();
        var lags = new List<double>();
        var errors = new SortedDictionary<int, long>();
        for (var i = first; i < last; i++)
        {
            lags.Add(Ms(_lagTicks[i]));
            if (_status[i] is >= 200 and < 300) ok.Add(Ms(_latencyTicks[i]));
            else errors[_status[i]] = errors.GetValueOrDefault(_status[i]) + 1;
        }
        var sentSpan = last - first < 2 ? 0 : (SentAt(last - 1) - SentAt(first)) / Stopwatch.Frequency;
        ok.Sort();
        lags.Sort();
        return new LoadResult(last - first, sentSpan, ok, lags, errors);
    }

    /// <summary>Every request sent, one line each: due second, latency ms, scheduler lateness ms, status; for finding stalls.</summary>
    public void WriteTimeline(string path)
    {
        using var timeline = new StreamWriter(path);
        timeline.WriteLine("due_s latency_ms late_ms status");
        for (long i = 0; i < Math.Min(Sent, _plan.TotalRequests); i++)
            timeline.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{i / (double)_plan.Rate:0.0000} {Ms(_latencyTicks[i]):0.000} {Ms(_lagTicks[i]):0.000} {_status[i]}"));
    }

    double SentAt(long i) => i * (double)Stopwatch.Frequency / _plan.Rate + _lagTicks[i];

    public void Dispose()
    {
        foreach (var client in _clients) client.Dispose();
    }

    async Task SendAsync(long i, long due)
    {
        var sentAt = Stopwatch.GetTimestamp();
        _lagTicks[i] = sentAt - due;
        Interlocked.Increment(ref _sent);
        try
        {
            using var request = Request(i);
            using var response = await _clients[i % _clients.Length].SendAsync(request, HttpCompletionOption.ResponseContentRead);
            _latencyTicks[i] = Stopwatch.GetTimestamp() - due;
            _status[i] = (int)response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            _status[i] = -1;
        }
        finally
        {
            Interlocked.Increment(ref _answered);
        }
    }

    HttpRequestMessage Request(long i)
    {
        var deployment = (int)(i % _checkUris.Length);
        var check = _plan.Call == AdmissionCall.Check || (_plan.Call == AdmissionCall.Mix && i % 2 == 0);
        if (!check) return new HttpRequestMessage(HttpMethod.Get, _getUris[deployment]);
        var content = new ByteArrayContent(CheckBody);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return new HttpRequestMessage(HttpMethod.Post, _checkUris[deployment]) { Content = content };
    }

    /// <summary>Sleeps until the due time, never spinning: on a shared 2-core machine a spinning scheduler would take a core from the host.</summary>
    static void WaitUntil(long due)
    {
        for (var now = Stopwatch.GetTimestamp(); now < due; now = Stopwatch.GetTimestamp())
            PreciseSleep.For(Stopwatch.GetElapsedTime(now, due));
    }

    static HttpClient Client(Uri baseAddress, string key, int connections) => new(new SocketsHttpHandler
    {
        // Past this many, requests queue in the client for a free connection; their latency still runs from their due time.
        MaxConnectionsPerServer = connections,
        UseProxy = false,
        UseCookies = false,
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
        ConnectTimeout = TimeSpan.FromSeconds(2),
    })
    {
        BaseAddress = baseAddress,
        Timeout = RequestTimeout,
        DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", key) },
    };

    static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}

/// <summary>The measured requests: how many were sent over how long, the sorted latencies of the successful ones, the scheduler's lateness, and failures by HTTP status (-1: no answer).</summary>
public sealed record LoadResult(long Requests, double SentOverSeconds, IReadOnlyList<double> OkLatencyMs, IReadOnlyList<double> SendLagMs, IReadOnlyDictionary<int, long> Errors)
{
    public double SentPerSecond => Requests / Math.Max(1e-9, SentOverSeconds);

    public long ErrorCount => Errors.Values.Sum();

    public static double At(IReadOnlyList<double> sorted, double percentile) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(percentile / 100 * sorted.Count) - 1, 0, sorted.Count - 1)];
}
