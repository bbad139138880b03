using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Marten;
using Npgsql;
using Throughput.Configuration;

namespace Throughput.Webhooks;

/// <summary>
/// Sends due deliveries, on one host of the schema at a time (a session advisory lock on a connection of its own, as the
/// daemon's leadership holds its own): the earliest pending delivery of each endpoint and order key, never a later one
/// while it waits, so a deployment's events arrive in the order of the log. Each attempt is recorded on the delivery as it
/// ends, and a free slot is filled at once, so a receiver that takes the whole timeout to answer holds up only its own
/// endpoint (at most <see cref="PerEndpoint"/> of the <see cref="Parallel"/> attempts in flight), never the others'. A crash
/// between a receiver's answer and that record sends the same message id again, which receivers deduplicate.
/// </summary>
public sealed class WebhookSender(IDocumentStore store, ServiceSettings service, WebhookSettings settings, SecretBox secrets, TimeProvider clock,
    ILogger<WebhookSender> log) : BackgroundService
{
    static readonly TimeSpan LockCheck = TimeSpan.FromSeconds(2);
    const int Parallel = 16;
    const int PerEndpoint = 4;
    const int Batch = 64;

    // No redirects: a redirect could lead past the operator's allowed hosts.
    readonly HttpClient _http = new(new SocketsHttpHandler { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
    {
        Timeout = settings.Timeout,
    };

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await SendWhileLockedAsync(stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                log.LogWarning(e, "Webhook sending stopped (lock lost, or the database not reachable); trying again in {Check}", LockCheck);
            }
            catch (OperationCanceledException)
            {
                // The host is stopping.
            }
            try { await Task.Delay(LockCheck, stoppingToken); }
            catch (OperationCanceledException) { }
        }
    }

    async Task SendWhileLockedAsync(CancellationToken ct)
    {
        // Not pooled: the lock lives and dies with this connection.
        await using var connection = new NpgsqlConnection(service.PostgresConnectionString() + ";Pooling=false;Application Name=throughput-webhook-sender");
        await connection.OpenAsync(ct);
        var lockId = BitConverter.ToInt32(SHA256.HashData(Encoding.UTF8.GetBytes("throughput-webhooks:" + store.Options.DatabaseSchemaName)));
        while (!await ScalarAsync<bool>(connection, $"select pg_try_advisory_lock({lockId})", ct)) await Task.Delay(LockCheck, ct);
        log.LogInformation("This host sends the webhooks of schema {Schema}", store.Options.DatabaseSchemaName);
        var inFlight = new Dictionary<string, (string EndpointId, Task Attempt)>(); // by delivery id
        try
        {
            var checkedAt = clock.GetUtcNow();
            while (true)
            {
                foreach (var ended in inFlight.Where(a => a.Value.Attempt.IsCompleted).Select(a => a.Key).ToList()) inFlight.Remove(ended);
                var started = inFlight.Count < Parallel ? await StartDueAsync(inFlight, ct) : 0;
                // Whatever was due has started, or every slot is taken: wait for an attempt to end (its key's next delivery
                // may be due, and its slot is free) or for the next poll.
                if (started == 0 || inFlight.Count == Parallel)
                    await Task.WhenAny([.. inFlight.Values.Select(a => a.Attempt), Task.Delay(settings.PollInterval, clock, ct)]);
                if (clock.GetUtcNow() - checkedAt < LockCheck) continue;
                await ScalarAsync<int>(connection, "select 1", ct); // a lost connection has lost the lock with it
                checkedAt = clock.GetUtcNow();
            }
        }
        finally
        {
            // Recorded before the lock goes, so the next holder does not send them again; each ends within the timeout.
            await Task.WhenAll(inFlight.Values.Select(a => a.Attempt));
        }
    }

    /// <summary>Starts an attempt at each due head not already in flight, within the limits; returns how many it started.</summary>
    async Task<int> StartDueAsync(Dictionary<string, (string EndpointId, Task Attempt)> inFlight, CancellationToken ct)
    {
        IReadOnlyList<WebhookDelivery> due;
        Dictionary<string, WebhookEndpoint> endpoints;
        await using (var query = store.QuerySession())
        {
            due = await query.AdvancedSql.QueryAsync<WebhookDelivery>(DueSql(), ct, clock.GetUtcNow(), inFlight.Keys.ToArray());
            if (due.Count == 0) return 0;
            endpoints = (await query.LoadManyAsync<WebhookEndpoint>(ct, due.Select(d => d.EndpointId).Distinct())).ToDictionary(e => e.Id);
        }
        var perEndpoint = inFlight.Values.CountBy(a => a.EndpointId).ToDictionary();
        var started = 0;
        foreach (var delivery in due)
        {
            if (inFlight.Count == Parallel) break;
            var held = perEndpoint.GetValueOrDefault(delivery.EndpointId);
            if (held == PerEndpoint || !endpoints.TryGetValue(delivery.EndpointId, out var endpoint)) continue;
            perEndpoint[delivery.EndpointId] = held + 1;
            inFlight[delivery.Id] = (delivery.EndpointId, AttemptAndRecordAsync(endpoint, delivery, ct));
            started++;
        }
        return started;
    }

    async Task AttemptAndRecordAsync(WebhookEndpoint endpoint, WebhookDelivery delivery, CancellationToken ct)
    {
        try
        {
            var after = await AttemptAsync(endpoint, delivery, ct);
            await using var session = store.LightweightSession();
            session.Store(after);
            await session.SaveChangesAsync(ct);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Not recorded: the delivery is still due as it was and is attempted again.
            if (!ct.IsCancellationRequested) log.LogWarning(e, "Recording webhook {MessageId}'s attempt failed", delivery.MessageId);
        }
    }

    string? _dueSql;

    /// <summary>
    /// The earliest pending delivery of each endpoint and order key, if it is due, not in flight and its endpoint enabled: one
    /// of each endpoint before a second of any, up to <see cref="PerEndpoint"/>, each endpoint's longest-waiting first, the
    /// endpoints in random order rather than by how long they waited: the endpoints of receivers gone for hours have every
    /// retry overdue, and would take every slot ahead of a delivery that has just become due.
    /// </summary>
    string DueSql() => _dueSql ??= $"""
        select d.data from (
            select h.id, row_number() over (partition by h.endpoint_id order by h.next_attempt_at) as place
            from (
                select distinct on (p.endpoint_id, p.order_key) p.id, p.endpoint_id, p.next_attempt_at
                from {Table<WebhookDelivery>()} p
                where p.status = 'Pending'
                order by p.endpoint_id, p.order_key, p.sequence
            ) h
            join {Table<WebhookEndpoint>()} e on e.id = h.endpoint_id and (e.data ->> 'enabled')::boolean
            where h.next_attempt_at <= ? and h.id <> all(?)
        ) ranked
        join {Table<WebhookDelivery>()} d on d.id = ranked.id
        where ranked.place <= {PerEndpoint}
        order by ranked.place, random()
        limit {Batch}
        """;

    string Table<T>() => store.Options.Schema.For<T>();

    async Task<WebhookDelivery> AttemptAsync(WebhookEndpoint endpoint, WebhookDelivery delivery, CancellationToken ct)
    {
        int? status = null;
        var now = clock.GetUtcNow();
        var signing = endpoint.SigningSecrets(now).Select(OpenOrNull).OfType<string>().ToList();
        var error = settings.Refuses(endpoint.Url)
            ?? (signing.Count == 0 ? "The endpoint's signing secret does not open with this host's Webhooks:SecretKey; rotate the secret." : null);
        if (error is null)
        {
            try
            {
                var timestamp = now.ToUnixTimeSeconds();
                using var request = new HttpRequestMessage(HttpMethod.Post, endpoint.Url) { Content = new StringContent(delivery.Body, Encoding.UTF8, "application/json") };
                request.Headers.Add("webhook-id", delivery.MessageId);
                request.Headers.Add("webhook-timestamp", timestamp.ToString(CultureInfo.InvariantCulture));
                request.Headers.Add("webhook-signature", Signatures.Header(signing, delivery.MessageId, timestamp, delivery.Body));
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
                status = (int)response.StatusCode;
            }
            catch (HttpRequestException e)
            {
                error = e.Message;
            }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested)
            {
                error = $"No answer within {settings.Timeout.TotalSeconds:0} s.";
            }
        }
        var after = delivery.After(clock.GetUtcNow(), status, error, settings.RetrySchedule, Random.Shared.NextDouble());
        if (after.Status == DeliveryStatus.Failed)
            log.LogWarning("Webhook {MessageId} to endpoint {Endpoint} given up after {Attempts} attempts", delivery.MessageId, endpoint.Id, after.Attempts.Count);
        return after;
    }

    /// <summary>A secret sealed under another key (the operator replaced Webhooks:SecretKey) fails its endpoint's deliveries, not everyone's.</summary>
    string? OpenOrNull(string sealedSecret)
    {
        try { return secrets.Open(sealedSecret); }
        catch (CryptographicException) { return null; }
    }

    static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 10 };
        return (T)(await command.ExecuteScalarAsync(ct))!;
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }
}
