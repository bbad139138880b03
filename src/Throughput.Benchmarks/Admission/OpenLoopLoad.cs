using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;

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
/// thread runs everything: it waits (epoll) until an answer arrives or the next request is due, sends each due request
/// on a free connection (or queues it until one is free), and reads answers as they arrive. A request's latency runs
/// from the moment it was DUE to the moment its answer was read in full, so a stalled server, a late wake-up or a wait
/// for a free connection shows up in the latency instead of silently lowering the rate (no coordinated omission).
/// </summary>
public sealed class OpenLoopLoad : IDisposable
{
    static readonly byte[] CheckBody = Encoding.UTF8.GetBytes("""{"estimatedTokens":1000}""");
    const long Untimed = -1;
    const long NoRequest = -2;

    readonly LoadPlan _plan;
    readonly byte[][] _checkRequests;
    readonly byte[][] _getRequests;
    readonly EndPoint _endpoint;
    readonly RawHttpConnection[] _connections;
    readonly Readiness _readiness;
    readonly int[] _ready;
    readonly Queue<int> _idle = new(); // connections by index; first in, first out so none sits idle into a keep-alive timeout
    readonly Queue<long> _waiting = new(); // due, but every connection busy
    readonly long[] _latencyTicks; // by request index; 0 = no answer (yet)
    readonly long[] _lagTicks; // by request index: how late it was sent
    readonly int[] _status; // by request index; -1 = failed without an HTTP answer, 0 = unanswered
    long _started;
    long _sent;
    long _answered;
    int _inFlight;
    long _primeUntil;
    long _primed;
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
        _connections = new RawHttpConnection[plan.Connections];
        _readiness = new Readiness(plan.Connections);
        _ready = new int[plan.Connections];
    }

    /// <summary>Requests due so far (sent, or waiting for a free connection).</summary>
    public long Sent => Interlocked.Read(ref _sent);

    public long Answered => Interlocked.Read(ref _answered);

    /// <summary>The run stopped early: more than <see cref="LoadPlan.MaxOutstanding"/> requests were waiting for answers.</summary>
    public bool Overloaded => _overloaded;

    /// <summary>
    /// Before the timed load: every connection opened and the host's request path compiled to its final tier, closed loop
    /// (each connection sends its next request when the last is answered) so a cold host is never buried under a backlog
    /// it could not yet serve. Returns the requests/s answered meanwhile: the most the host gives these connections.
    /// </summary>
    public double Prime(TimeSpan span)
    {
        for (var c = 0; c < _connections.Length; c++) Connect(c);
        var started = Stopwatch.GetTimestamp();
        _primeUntil = started + (long)(span.TotalSeconds * Stopwatch.Frequency);
        for (var c = 0; c < _connections.Length; c++) Send(c, Untimed, started);
        while (_inFlight > 0) Pump(TimeSpan.FromMilliseconds(50));
        return _primed / Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    /// <summary>
    /// Sends every request of the plan when it is due, then waits for the answers still out, at most
    /// <paramref name="patience"/> after the last was due; false if some never came.
    /// </summary>
    public bool Run(TimeSpan patience, CancellationToken cancellationToken)
    {
        _started = Stopwatch.GetTimestamp();
        var total = _plan.TotalRequests;
        long next = 0;
        while (true)
        {
            var now = Stopwatch.GetTimestamp();
            for (; next < total && DueAt(next) <= now; next++)
            {
                if (Sent - Answered > _plan.MaxOutstanding || cancellationToken.IsCancellationRequested)
                {
                    _overloaded = !cancellationToken.IsCancellationRequested;
                    total = next;
                    break;
                }
                Interlocked.Increment(ref _sent);
                if (_idle.TryDequeue(out var c)) Send(c, next, now);
                else _waiting.Enqueue(next);
            }
            if (next >= total)
            {
                if (_inFlight == 0 && _waiting.Count == 0) return true;
                var deadline = (next == 0 ? _started : DueAt(next - 1)) + (long)(patience.TotalSeconds * Stopwatch.Frequency);
                if (now >= deadline) return false;
                Pump(Stopwatch.GetElapsedTime(now, deadline));
            }
            else
            {
                Pump(Stopwatch.GetElapsedTime(now, DueAt(next)));
            }
        }
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

    /// <summary>Every request sent, one line each: due second, latency ms, lateness of its send ms, status; for finding stalls.</summary>
    public void WriteTimeline(string path)
    {
        using var timeline = new StreamWriter(path);
        timeline.WriteLine("due_s latency_ms late_ms status");
        for (long i = 0; i < Math.Min(Sent, _plan.TotalRequests); i++)
            timeline.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{i / (double)_plan.Rate:0.0000} {Ms(_latencyTicks[i]):0.000} {Ms(_lagTicks[i]):0.000} {_status[i]}"));
    }

    public void Dispose()
    {
        foreach (var connection in _connections) connection?.Dispose();
        _readiness.Dispose();
    }

    double SentAt(long i) => DueAt(i) - _started + _lagTicks[i];

    /// <summary>When request <paramref name="i"/> is due: the run's start plus i / rate.</summary>
    long DueAt(long i) => _started + (long)(i * (double)Stopwatch.Frequency / _plan.Rate);

    /// <summary>Waits at most <paramref name="timeout"/> for answers and handles every one that arrived.</summary>
    void Pump(TimeSpan timeout)
    {
        var count = _readiness.Wait(timeout, _ready);
        for (var r = 0; r < count; r++)
        {
            var c = _ready[r];
            var status = _connections[c].Receive();
            if (status == RawHttpConnection.Incomplete) continue;
            if (status == RawHttpConnection.Broken) Connect(c);
            if (_connections[c].InFlight != NoRequest) Answer(c, status, Stopwatch.GetTimestamp());
        }
    }

    /// <summary>Records the answer to the connection's request and gives the connection its next one, if any is due.</summary>
    void Answer(int c, int status, long now)
    {
        var request = _connections[c].InFlight;
        _connections[c].InFlight = NoRequest;
        _inFlight--;
        if (request == Untimed)
        {
            _primed++;
        }
        else
        {
            _status[request] = status;
            _latencyTicks[request] = now - DueAt(request);
            Interlocked.Increment(ref _answered);
        }
        if (now < _primeUntil) Send(c, Untimed, now);
        else if (_waiting.TryDequeue(out var next)) Send(c, next, now);
        else _idle.Enqueue(c);
    }

    void Send(int c, long request, long now)
    {
        _connections[c].InFlight = request;
        _inFlight++;
        if (request != Untimed) _lagTicks[request] = now - DueAt(request);
        if (_connections[c].Send(Request(request == Untimed ? _primed + _inFlight : request).Span)) return;
        Connect(c);
        Answer(c, RawHttpConnection.Broken, Stopwatch.GetTimestamp());
    }

    /// <summary>Opens connection <paramref name="c"/>, or replaces it when it broke (its request in flight carries over, as failed).</summary>
    void Connect(int c)
    {
        var broken = _connections[c];
        var connection = RawHttpConnection.Open(_endpoint);
        connection.InFlight = broken?.InFlight ?? NoRequest;
        if (broken is not null)
        {
            _readiness.Forget(broken.Descriptor);
            broken.Dispose();
        }
        _connections[c] = connection;
        _readiness.Watch(connection.Descriptor, c);
    }

    ReadOnlyMemory<byte> Request(long i)
    {
        var deployment = (int)(i % _checkRequests.Length);
        var check = _plan.Call == AdmissionCall.Check || (_plan.Call == AdmissionCall.Mix && i % 2 == 0);
        return check ? _checkRequests[deployment] : _getRequests[deployment];
    }

    static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}

/// <summary>The measured requests: how many were sent over how long, the sorted latencies of the successful ones, the scheduler's lateness, and failures by HTTP status (-1: no answer).</summary>
public sealed record LoadResult(long Requests, double SentOverSeconds, IReadOnlyList<double> OkLatencyMs, IReadOnlyList<double> SendLagMs, IReadOnlyDictionary<int, long> Errors)
{
    public double SentPerSecond => Requests / Math.Max(1e-9, SentOverSeconds);

    public long ErrorCount => Errors.Values.Sum();
}
