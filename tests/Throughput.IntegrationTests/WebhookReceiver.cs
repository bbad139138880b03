using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Throughput.IntegrationTests;

public sealed record Arrival(string Path, string Id, string Timestamp, string Signature, string Body, bool Accepted, long ReceivedAt)
{
    readonly JsonElement _payload = JsonSerializer.Deserialize<JsonElement>(Body);
    public string Type => _payload.GetProperty("type").GetString()!;
    public JsonElement Data => _payload.GetProperty("data");
    public string? TenantId => _payload.GetProperty("tenantId").GetString();
}

/// <summary>
/// A receiver on loopback that records every request, answering 503 while down and 204 otherwise; its clock (the system's
/// unless given) stamps each arrival, as a receiver's own clock checks the replay window.
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    /// <summary>What a receiver in any language does (docs/webhooks.md): HMAC-SHA256 of id.timestamp.body, compared with each v1 signature, the timestamp within 5 minutes.</summary>
    public static bool Verifies(Arrival a, string secret)
    {
        if (Math.Abs(a.ReceivedAt - long.Parse(a.Timestamp, CultureInfo.InvariantCulture)) > 300) return false;
        var expected = Convert.ToBase64String(HMACSHA256.HashData(Convert.FromBase64String(secret["whsec_".Length..]), Encoding.UTF8.GetBytes($"{a.Id}.{a.Timestamp}.{a.Body}")));
        return a.Signature.Split(' ').Any(s => s == "v1," + expected);
    }

    readonly HttpListener _listener = new();
    readonly ConcurrentQueue<Arrival> _arrivals = new();
    readonly Task _loop;
    readonly int _port;
    readonly Func<DateTimeOffset> _clock;

    volatile bool _down;

    public bool Down { get => _down; set => _down = value; }

    WebhookReceiver(Func<DateTimeOffset> clock)
    {
        _clock = clock;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            _port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        _listener.Prefixes.Add($"http://127.0.0.1:{_port}/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public static WebhookReceiver Start(Func<DateTimeOffset>? clock = null) => new(clock ?? (() => DateTimeOffset.UtcNow));

    public string Url(string path) => $"http://127.0.0.1:{_port}/{path}";

    public List<Arrival> Accepted(string path) => _arrivals.Where(a => a.Path == path && a.Accepted).ToList();

    /// <summary>
    /// Waits until at least <paramref name="count"/> deliveries to <paramref name="path"/> were accepted, and returns them.
    /// A test that moves the platform's clock waits for this first: a delivery signed before the jump and received after
    /// it fails <see cref="Verifies"/>' five-minute window (seen in CI when the machine was busy).
    /// </summary>
    public Task<List<Arrival>> ArrivedAsync(string path, int count, TimeSpan? timeout = null) =>
        Eventually.Until(() => Task.FromResult(Accepted(path)), a => a.Count >= count, timeout);

    public Task<int> Refused(string path) => Task.FromResult(_arrivals.Count(a => a.Path == path && !a.Accepted));

    /// <summary>The most times one message was refused.</summary>
    public Task<int> MostRefusalsOfOne(string path) =>
        Task.FromResult(_arrivals.Where(a => a.Path == path && !a.Accepted).GroupBy(a => a.Id).Select(g => g.Count()).DefaultIfEmpty().Max());

    /// <summary>A path whose requests get no answer until the receiver is disposed (the sender's timeout ends them first).</summary>
    public string? Hanging { get; set; }

    readonly TaskCompletionSource _disposed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly ConcurrentDictionary<string, int> _open = new();
    readonly ConcurrentBag<Task> _handlers = [];

    /// <summary>Requests to the path that have arrived and not been answered.</summary>
    public int Open(string path) => _open.GetValueOrDefault(path);

    async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            // Stopping fails the pending accept, on Linux sometimes before IsListening turns false: disposal started is the test.
            catch (Exception) when (_disposed.Task.IsCompleted || !_listener.IsListening) { return; }
            _handlers.Add(Task.Run(() => AnswerAsync(context)));
        }
    }

    async Task AnswerAsync(HttpListenerContext context)
    {
        using var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8);
        var body = await reader.ReadToEndAsync();
        var path = context.Request.Url!.AbsolutePath.Trim('/');
        var hanging = path == Hanging;
        var down = Down || hanging;
        _arrivals.Enqueue(new Arrival(path, context.Request.Headers["webhook-id"]!,
            context.Request.Headers["webhook-timestamp"]!, context.Request.Headers["webhook-signature"]!, body, !down, _clock().ToUnixTimeSeconds()));
        if (hanging)
        {
            _open.AddOrUpdate(path, 1, (_, n) => n + 1);
            await _disposed.Task;
            _open.AddOrUpdate(path, 0, (_, n) => n - 1);
        }
        try
        {
            context.Response.StatusCode = down ? 503 : 204;
            context.Response.Close();
        }
        catch (Exception e) when (!_listener.IsListening || e is ObjectDisposedException or HttpListenerException)
        {
            // Disposed: the listener closed the request; or the sender is gone (its host stopped first) and took the response with it.
        }
    }

    public async ValueTask DisposeAsync()
    {
        _disposed.TrySetResult();
        _listener.Stop();
        await _loop;
        await Task.WhenAll(_handlers);
        _listener.Close();
    }
}
