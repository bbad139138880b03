using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Marten;
using Throughput.Contracts;
using Throughput.Configuration;

namespace Throughput.Nodes;

/// <summary>What a serving node's broker user may touch, as RabbitMQ permission patterns on the platform's vhost.</summary>
/// <param name="Configure">Only the server-named queue its admission feed declares (clients cannot name a queue <c>amq.*</c>).</param>
/// <param name="Write">Publishing to the metering exchange; binding that queue.</param>
/// <param name="Read">Binding from the admission and lease exchanges; consuming that queue. Never a partition queue or the metering exchange.</param>
/// <param name="AdmissionTopics">Routing keys it may bind on the admission and lease exchanges: its regions' only.</param>
public sealed record NodePermissions(string Configure, string Write, string Read, string AdmissionTopics)
{
    const string FeedQueue = @"amq\.gen-.*";

    /// <param name="alsoPublishTo">A pattern of further exchanges nodes may publish to (e.g. while metering moves to a new exchange).</param>
    public static NodePermissions For(ServingNode node, string meteringExchange, string admissionExchange, string? alsoPublishTo = null) => new(
        $"^{FeedQueue}$",
        $"^({Regex.Escape(meteringExchange)}|{FeedQueue}{(string.IsNullOrEmpty(alsoPublishTo) ? "" : "|" + alsoPublishTo)})$",
        $"^({Regex.Escape(admissionExchange)}|{Regex.Escape(AdmissionLeaseTopology.Exchange)}|{FeedQueue})$",
        node.Regions.Count == 0 ? "^[^.]+\\." : $"^({string.Join('|', node.Regions.Select(Regex.Escape))})\\.");
}

/// <summary>
/// Serving nodes' own RabbitMQ users, kept by the platform through the broker's management API: created with the
/// password hash the platform stored (the broker's salted SHA-256 format, so neither side keeps the password), given
/// <see cref="NodePermissions"/>, and deleted with their open connections on revocation.
/// </summary>
public sealed class BrokerAccounts(ServiceSettings settings, IConfiguration configuration, ILogger<BrokerAccounts> log) : IDisposable
{
    public const string UserPrefix = "node.";

    readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };
    readonly string _meteringExchange = configuration["Metering:Exchange"] is { Length: > 0 } e ? e : MeteringTopology.Exchange;
    readonly string? _alsoPublishTo = configuration["Metering:NodeExchanges"];
    readonly AuthenticationHeaderValue _admin = new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{settings.RabbitAdminUser}:{settings.RabbitAdminPassword}")));

    public static string UserFor(string producerId) => UserPrefix + producerId;

    public ServingNodeCredentials CredentialsOf(string producerId, string password) =>
        new(producerId, UserFor(producerId), password, settings.RabbitVirtualHost, _meteringExchange, AdmissionTopology.Exchange);

    /// <summary>A new broker password and its hash as RabbitMQ stores it: base64(salt ‖ SHA-256(salt ‖ password)), 4-byte salt.</summary>
    public static (string Password, string Hash) NewPassword()
    {
        var password = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        return (password, HashOf(password, RandomNumberGenerator.GetBytes(4)));
    }

    public static string HashOf(string password, ReadOnlySpan<byte> salt)
    {
        var salted = new byte[salt.Length + Encoding.UTF8.GetByteCount(password)];
        salt.CopyTo(salted);
        Encoding.UTF8.GetBytes(password, salted.AsSpan(salt.Length));
        return Convert.ToBase64String([.. salt, .. SHA256.HashData(salted)]);
    }

    /// <summary>Creates or updates the node's broker user and its permissions; idempotent.</summary>
    public async Task GrantAsync(ServingNode node, CancellationToken ct)
    {
        if (node.PasswordHash is null || node.Revoked) return;
        var permissions = NodePermissions.For(node, _meteringExchange, AdmissionTopology.Exchange, _alsoPublishTo);
        var user = Uri.EscapeDataString(node.BrokerUser);
        var vhost = Uri.EscapeDataString(settings.RabbitVirtualHost);
        await SendAsync(HttpMethod.Put, $"api/users/{user}", new { password_hash = node.PasswordHash, hashing_algorithm = "rabbit_password_hashing_sha256", tags = "" }, ct);
        await SendAsync(HttpMethod.Put, $"api/permissions/{vhost}/{user}", new { configure = permissions.Configure, write = permissions.Write, read = permissions.Read }, ct);
        foreach (var exchange in new[] { AdmissionTopology.Exchange, AdmissionLeaseTopology.Exchange })
            await SendAsync(HttpMethod.Put, $"api/topic-permissions/{vhost}/{user}", new { exchange, write = "^$", read = permissions.AdmissionTopics }, ct);
    }

    /// <summary>Deletes the broker user (no new connections) and closes its open connections; idempotent.</summary>
    public async Task RevokeAsync(string brokerUser, CancellationToken ct)
    {
        var user = Uri.EscapeDataString(brokerUser);
        await SendAsync(HttpMethod.Delete, $"api/users/{user}", null, ct);
        await SendAsync(HttpMethod.Delete, $"api/connections/username/{user}", null, ct);
    }

    /// <summary>Brings every node's broker user in line with the event store: what an interrupted grant or revoke left undone.</summary>
    public async Task ReconcileAsync(IQuerySession session, CancellationToken ct)
    {
        foreach (var node in await session.Query<ServingNode>().ToListAsync(ct))
        {
            if (node.Revoked) await RevokeAsync(node.BrokerUser, ct);
            else await GrantAsync(node, ct);
        }
    }

    const int ServerErrorAttempts = 3;

    async Task SendAsync(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        Exception? last = null;
        foreach (var endpoint in settings.RabbitManagementEndpoints)
        {
            try
            {
                for (var attempt = 1; ; attempt++)
                {
                    using var request = new HttpRequestMessage(method, new Uri(endpoint, path)) { Content = body is null ? null : JsonContent.Create(body) };
                    request.Headers.Authorization = _admin;
                    using var response = await _http.SendAsync(request, ct);
                    if (response.IsSuccessStatusCode || (method == HttpMethod.Delete && response.StatusCode == HttpStatusCode.NotFound)) return;
                    // Closing a user's connections answers 500 when one of them goes away while the broker closes it. Every
                    // call here is idempotent, so a server error is sent again at once rather than left to the reconciler.
                    if ((int)response.StatusCode >= 500 && attempt < ServerErrorAttempts)
                    {
                        await Task.Delay(TimeSpan.FromMilliseconds(100 * attempt), ct);
                        continue;
                    }
                    throw new BrokerAccountsException($"{method} {path} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                last = e;
                log.LogDebug(e, "Broker management at {Endpoint} did not answer", endpoint);
            }
        }
        throw new BrokerAccountsException("No broker management endpoint answered: " + string.Join(", ", settings.RabbitManagementEndpoints), last);
    }

    public void Dispose() => _http.Dispose();
}

public sealed class BrokerAccountsException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Reconciles serving nodes' broker users at start and every half minute, so a grant or revoke cut short by a crash still lands.</summary>
public sealed class BrokerAccountsReconciler(IDocumentStore store, BrokerAccounts accounts, ILogger<BrokerAccountsReconciler> log) : BackgroundService
{
    static readonly TimeSpan Every = TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        do
        {
            try
            {
                await using var session = store.QuerySession();
                await accounts.ReconcileAsync(session, stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                log.LogWarning(e, "Reconciling serving nodes' broker users failed; retrying in {Every}", Every);
            }
        }
        while (await Wait(stoppingToken));
    }

    static async Task<bool> Wait(CancellationToken ct)
    {
        try
        {
            await Task.Delay(Every, ct);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
