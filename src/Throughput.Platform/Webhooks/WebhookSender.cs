using System.Collections.Concurrent;
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
/// while it waits, so a deployment's events arrive in the order of the log. Each attempt is recorded on the delivery;
/// a crash between a receiver's answer and that record sends the same message id again, which receivers deduplicate.
/// </summary>
public sealed class WebhookSender(IDocumentStore store, ServiceSettings service, WebhookSettings settings, SecretBox secrets, TimeProvider clock,
    ILogger<WebhookSender> log) : BackgroundService
{
    static readonly TimeSpan LockCheck = TimeSpan.FromSeconds(2);
    const int Parallel = 8;
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
        var checkedAt = clock.GetUtcNow();
        while (true)
        {
            if (await SendDueAsync(ct) < Batch) await Task.Delay(settings.PollInterval, clock, ct);
            if (clock.GetUtcNow() - checkedAt < LockCheck) continue;
            await ScalarAsync<int>(connection, "select 1", ct); // a lost connection has lost the lock with it
            checkedAt = clock.GetUtcNow();
        }
    }

    /// <summary>Attempts every due head of its order key once; returns how many.</summary>
    public async Task<int> SendDueAsync(CancellationToken ct)
    {
        IReadOnlyList<WebhookDelivery> due;
        Dictionary<string, WebhookEndpoint> endpoints;
        await using (var query = store.QuerySession())
        {
            due = await query.AdvancedSql.QueryAsync<WebhookDelivery>(DueSql(), ct, clock.GetUtcNow());
            if (due.Count == 0) return 0;
            endpoints = (await query.LoadManyAsync<WebhookEndpoint>(ct, due.Select(d => d.EndpointId).Distinct())).ToDictionary(e => e.Id);
        }
        var attempted = new ConcurrentBag<WebhookDelivery>();
        await System.Threading.Tasks.Parallel.ForEachAsync(due, new ParallelOptions { MaxDegreeOfParallelism = Parallel, CancellationToken = ct },
            async (delivery, token) => attempted.Add(await AttemptAsync(endpoints[delivery.EndpointId], delivery, token)));
        await using var session = store.LightweightSession();
        session.Store(attempted.ToArray());
        await session.SaveChangesAsync(ct);
        return due.Count;
    }

    string? _dueSql;

    /// <summary>The earliest pending delivery of each endpoint and order key, if it is due and its endpoint enabled.</summary>
    string DueSql() => _dueSql ??= $"""
        select h.data from (
            select distinct on (d.data ->> 'endpointId', d.data ->> 'orderKey') d.data, (d.data ->> 'nextAttemptAt')::timestamptz as due
            from {Table<WebhookDelivery>()} d
            where d.data ->> 'status' = 'Pending'
            order by d.data ->> 'endpointId', d.data ->> 'orderKey', (d.data ->> 'sequence')::bigint
        ) h
        join {Table<WebhookEndpoint>()} e on e.id = h.data ->> 'endpointId' and (e.data ->> 'enabled')::boolean
        where h.due <= ?
        order by h.due
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
