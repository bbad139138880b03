using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Throughput.Benchmarks.Drills.Failover;

/// <summary>The pool the purchasers compete for, as the operator API reports it, against what they hold by their own count.</summary>
public sealed record PoolCheck(decimal Capacity, decimal Sold, decimal Held)
{
    public bool Exact => Sold == Held;

    public bool Oversold => Sold > Capacity;
}

/// <summary>
/// Purchase load: customers buying small deployments from a pool kept nearly full, each purchase with an Idempotency-Key
/// and retried with the same key until the platform answers for certain (a 503 during a failover may hide a commit); a
/// refusal for want of capacity releases the customer's oldest deployment. Their own count of what they hold must equal
/// what the pool says it sold, and that never more than its capacity.
/// </summary>
public sealed class Purchasers : IAsyncDisposable
{
    const decimal Ptu = 0.5m;
    static readonly TimeSpan Pace = TimeSpan.FromMilliseconds(300);

    readonly HttpClient _tenant;
    readonly HttpClient _operator;
    readonly string _model;
    readonly string _region;
    readonly Lock _gate = new();
    readonly List<string> _held = [];
    readonly CancellationTokenSource _stop = new();
    readonly List<Task> _loops = [];
    TaskCompletionSource _running = Running();
    long _bought, _refused, _released, _unavailable, _serverErrors;

    Purchasers(HttpClient tenant, HttpClient op, string model, string region)
    {
        _tenant = tenant;
        _operator = op;
        _model = model;
        _region = region;
    }

    public long Bought => Interlocked.Read(ref _bought);

    public long Refused => Interlocked.Read(ref _refused);

    public long Released => Interlocked.Read(ref _released);

    /// <summary>503 answers (each with Retry-After, or it counts as a server error).</summary>
    public long Unavailable => Interlocked.Read(ref _unavailable);

    /// <summary>5xx answers other than a 503 with Retry-After: must stay 0.</summary>
    public long ServerErrors => Interlocked.Read(ref _serverErrors);

    /// <summary>The first answer a buyer could not make sense of (it stopped buying then), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary><paramref name="buyers"/> concurrent buyers of one tenant in the pool of <paramref name="region"/>, which they keep full.</summary>
    public static Purchasers Start(HttpClient op, HttpClient tenant, string model, string region, int buyers)
    {
        var purchasers = new Purchasers(tenant, op, model, region);
        purchasers._running.TrySetResult();
        for (var i = 0; i < buyers; i++) purchasers._loops.Add(Task.Run(() => purchasers.BuyAsync(i), CancellationToken.None));
        return purchasers;
    }

    public void Pause()
    {
        lock (_gate)
        {
            if (_running.Task.IsCompleted) _running = Running();
        }
    }

    public void Resume()
    {
        lock (_gate) _running.TrySetResult();
    }

    /// <summary>The pool as the operator reads it now, against the deployments the buyers hold (call while paused).</summary>
    public async Task<PoolCheck> CheckAsync(CancellationToken ct)
    {
        var pools = await _operator.GetFromJsonAsync<JsonElement>("/v1/operator/pools", ct);
        var pool = pools.EnumerateArray().Single(p => p.GetProperty("model").GetString() == _model && p.GetProperty("region").GetString() == _region);
        lock (_gate) return new PoolCheck(pool.GetProperty("capacityPtu").GetDecimal(), pool.GetProperty("soldPtu").GetDecimal(), _held.Count * Ptu);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        Resume();
        await Task.WhenAll(_loops);
        _stop.Dispose();
    }

    async Task BuyAsync(int buyer)
    {
        var stop = _stop.Token;
        try
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                Task running;
                lock (_gate) running = _running.Task;
                await running.WaitAsync(stop);
                var key = $"ha-buy-{buyer}-{n}-{Guid.NewGuid():N}";
                var (status, body) = await UntilCertainAsync(() =>
                {
                    var request = new HttpRequestMessage(HttpMethod.Post, "/v1/deployments")
                    {
                        Content = JsonContent.Create(new { name = $"buy-{buyer}-{n}", model = _model, region = _region, type = "Global", ptu = Ptu }),
                    };
                    request.Headers.Add("Idempotency-Key", key);
                    return request;
                }, stop);
                if (status == HttpStatusCode.Created)
                {
                    Interlocked.Increment(ref _bought);
                    lock (_gate) _held.Add(body.GetProperty("id").GetString()!);
                }
                else if (status is HttpStatusCode.Conflict or HttpStatusCode.UnprocessableEntity)
                {
                    Interlocked.Increment(ref _refused);
                    await ReleaseOldestAsync(stop);
                }
                else
                {
                    throw new InvalidOperationException($"a purchase answered {(int)status}: {body}");
                }
                await Task.Delay(Pace, stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopped.
        }
        catch (Exception e)
        {
            Failure ??= $"buyer {buyer}: {e.Message}"; // an answer no client should get; the check reports it
        }
    }

    async Task ReleaseOldestAsync(CancellationToken stop)
    {
        string? oldest;
        lock (_gate)
        {
            oldest = _held.Count == 0 ? null : _held[0];
            if (oldest is not null) _held.RemoveAt(0);
        }
        if (oldest is null) return;
        // A release is idempotent (releasing a released deployment changes nothing); a stale ETag is read again.
        while (true)
        {
            var (read, deployment) = await UntilCertainAsync(() => new HttpRequestMessage(HttpMethod.Get, $"/v1/deployments/{oldest}"), stop);
            if (read != HttpStatusCode.OK) throw new InvalidOperationException($"reading deployment {oldest} answered {(int)read}");
            var revision = deployment.GetProperty("revision").GetInt64();
            var (status, _) = await UntilCertainAsync(() =>
            {
                var request = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{oldest}/release");
                request.Headers.IfMatch.Add(new EntityTagHeaderValue($"\"{revision}\""));
                return request;
            }, stop);
            if (status == HttpStatusCode.PreconditionFailed) continue;
            if (status != HttpStatusCode.OK) throw new InvalidOperationException($"releasing deployment {oldest} answered {(int)status}");
            Interlocked.Increment(ref _released);
            return;
        }
    }

    /// <summary>Sends until the answer is certain: a 503 (after its Retry-After, capped) or no answer at all is tried again.</summary>
    async Task<(HttpStatusCode Status, JsonElement Body)> UntilCertainAsync(Func<HttpRequestMessage> create, CancellationToken stop)
    {
        while (true)
        {
            using var request = create();
            try
            {
                using var response = await _tenant.SendAsync(request, stop);
                if (response.StatusCode == HttpStatusCode.ServiceUnavailable && response.Headers.RetryAfter?.Delta is { } wait)
                {
                    Interlocked.Increment(ref _unavailable);
                    await Task.Delay(wait < TimeSpan.FromSeconds(1) ? wait : TimeSpan.FromSeconds(1), stop);
                    continue;
                }
                if ((int)response.StatusCode >= 500)
                {
                    Interlocked.Increment(ref _serverErrors);
                    await Task.Delay(500, stop);
                    continue;
                }
                var text = await response.Content.ReadAsStringAsync(stop);
                return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
            }
            catch (Exception e) when (e is HttpRequestException || (e is TaskCanceledException && !stop.IsCancellationRequested))
            {
                await Task.Delay(500, stop); // the host is away or slow; the same request again
            }
        }
    }

    static TaskCompletionSource Running() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
