using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Threading.Channels;

namespace Throughput.Benchmarks.Admission;

/// <summary>Which admission call the load makes: the per-request check, the limit read, or both alternately.</summary>
public enum AdmissionCall
{
    Check,
    Get,
    Mix,
}

/// <summary>A constant request rate for a warm-up and a measured span, spread over keep-alive connections.</summary>
public sealed record LoadPlan(int Rate, TimeSpan Warmup, TimeSpan Duration, int Connections, AdmissionCall Call)
{
    /// <summary>More requests than this unanswered (five seconds of load) means the host cannot keep up: the run stops instead of piling up requests.</summary>
    public long MaxOutstanding => Math.Max(1000, Rate * 5L);

    public long WarmupRequests => (long)(Rate * Warmup.TotalSeconds);

    public long MeasuredRequests => (long)(Rate * Duration.TotalSeconds);

    public long TotalRequests => WarmupRequests + MeasuredRequests;
}

/// <summary>
/// An open-loop load generator: request i is due at start + i / rate, whatever happened to the requests before it. One
/// scheduler thread queues each request when it is due (never waiting for answers) and the next free connection sends it;
/// its latency runs from the moment it was DUE to the moment its answer was read in full, so a stalled server, a late
/// scheduler or a wait for a free connection shows up in the latency instead of silently lowering the rate (no
/// coordinated omission).
/// </summary>
public sealed class OpenLoopLoad : IDisposable
{
    static readonly byte[] CheckBody = Encoding.UTF8.GetBytes("""{"estimatedTokens":1000}""");
    static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    readonly LoadPlan _plan;
    readonly byte[][] _checkRequests;
    readonly byte[][] _getRequests;
    readonly List<RawHttpConnection> _connections = [];
    // Synchronous continuations: the scheduler thread itself sends a due request on a connection that waits for one,
    // instead of waking a thread-pool thread to do it (a context switch per request, taken from the host measured).
    readonly Channel<long> _due = Channel.CreateUnbounded<long>(new UnboundedChannelOptions { SingleWriter = true, AllowSynchronousContinuations = true });
    readonly long[] _latencyTicks; // by request index; 0 = no answer (yet)
    readonly long[] _lagTicks; // by request index: how late the scheduler queued it
    readonly int[] _status; // by request index; -1 = failed without an HTTP answer
    readonly EndPoint _endpoint;
    long _started;
    long _sent;
    long _answered;
    volatile bool _overloaded;

    public OpenLoopLoad(LoadPlan plan, Uri baseAddress, string servingNodeKey, IReadOnlyList<string> deployments)
    {
        _plan = plan;
        _endpoint = new IPEndPoint(IPAddress.Parse(baseAddress.Host), baseAddress.Port);
        var host = baseAddress.Authority;
        _checkRequests = [.. deployments.Select(d => RawHttpConnection.Request("POST", $"/v1/admission/{d}/check", host, servingNodeKey, CheckBody))];
        _getRequests = [.. deployments.Select(d => RawHttpConnection.Request("GET", $"/v1/admission/{d}", host, servingNodeKey, default))];
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
        for (var c = _connections.Count; c < _plan.Connections; c++) _connections.Add(await RawHttpConnection.OpenAsync(_endpoint, cancellationToken));
        var deadline = Stopwatch.GetTimestamp() + (long)(span.TotalSeconds * Stopwatch.Frequency);
        long answered = 0;
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(_connections.Select(async (connection, c) =>
        {
            for (var i = c; Stopwatch.GetTimestamp() < deadline; i += _connections.Count)
            {
                await connection.SendAsync(Request(i), cancellationToken);
                Interlocked.Increment(ref answered);
            }
        }));
        return answered / Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    /// <summary>Queues every request of the plan on time; returns once the last one is queued (answers may still be on their way).</summary>
    public void Run(CancellationToken cancellationToken)
    {
        var senders = _connections.Select(connection => Task.Run(() => SendQueuedAsync(connection))).ToArray();
        PreciseSleep.TightenTimerSlack();
        _started = Stopwatch.GetTimestamp();
        for (long i = 0; i < _plan.TotalRequests && !cancellationToken.IsCancellationRequested; i++)
        {
            var due = DueAt(i);
            WaitUntil(due);
            if (Sent - Answered > _plan.MaxOutstanding)
            {
                _overloaded = true;
                break;
            }
            _lagTicks[i] = Stopwatch.GetTimestamp() - due;
            Interlocked.Increment(ref _sent);
            _due.Writer.TryWrite(i);
        }
        _due.Writer.Complete();
        GC.KeepAlive(senders);
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

    double SentAt(long i) => DueAt(i) - _started + _lagTicks[i];

    /// <summary>When request <paramref name="i"/> is due: the run's start plus i / rate.</summary>
    long DueAt(long i) => _started + (long)(i * (double)Stopwatch.Frequency / _plan.Rate);

    public void Dispose()
    {
        foreach (var connection in _connections) connection.Dispose();
    }

    /// <summary>One connection's loop: the next due request, sent and answered, then the next; a broken connection is replaced.</summary>
    async Task SendQueuedAsync(RawHttpConnection connection)
    {
        // ReadAsync hands each request to one waiting connection; ReadAllAsync would wake every idle connection per request.
        while (await NextDueAsync() is { } i)
        {
            var due = DueAt(i);
            try
            {
                using var timeout = new CancellationTokenSource(RequestTimeout);
                _status[i] = await connection.SendAsync(Request(i), timeout.Token);
                _latencyTicks[i] = Stopwatch.GetTimestamp() - due;
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or System.Net.Sockets.SocketException)
            {
                _status[i] = -1;
                connection.Dispose();
                connection = await RawHttpConnection.OpenAsync(_endpoint, CancellationToken.None);
                lock (_connections) _connections.Add(connection);
            }
            finally
            {
                Interlocked.Increment(ref _answered);
            }
        }
    }

    async ValueTask<long?> NextDueAsync()
    {
        try
        {
            return await _due.Reader.ReadAsync();
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    ReadOnlyMemory<byte> Request(long i)
    {
        var deployment = (int)(i % _checkRequests.Length);
        var check = _plan.Call == AdmissionCall.Check || (_plan.Call == AdmissionCall.Mix && i % 2 == 0);
        return check ? _checkRequests[deployment] : _getRequests[deployment];
    }

    /// <summary>Sleeps until the due time, never spinning: on a shared 2-core machine a spinning scheduler would take a core from the host.</summary>
    static void WaitUntil(long due)
    {
        for (var now = Stopwatch.GetTimestamp(); now < due; now = Stopwatch.GetTimestamp())
            PreciseSleep.For(Stopwatch.GetElapsedTime(now, due));
    }

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
