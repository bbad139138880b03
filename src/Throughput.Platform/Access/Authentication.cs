using System.Security.Claims;
using System.Text.Encodings.Web;
using Marten;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using System.Threading.RateLimiting;

namespace Throughput.Access;

public static class Policies
{
    public const string Operator = nameof(Role.Operator);
    public const string Finance = nameof(Role.Finance);
    public const string Tenant = nameof(Role.Tenant);
    public const string ServingNode = nameof(Role.ServingNode);
}

public static class PrincipalExtensions
{
    public const string TenantClaim = "throughput:tenant";

    /// <summary>The tenant a tenant key belongs to; staff keys have none.</summary>
    public static string? TenantId(this ClaimsPrincipal user) => user.FindFirstValue(TenantClaim);

    public const string ProducerClaim = "throughput:producer";

    /// <summary>The producer id a serving node's key was issued for; null for any other key.</summary>
    public static string? Producer(this ClaimsPrincipal user) => user.FindFirstValue(ProducerClaim);

    public static string KeyId(this ClaimsPrincipal user) => user.FindFirstValue(ClaimTypes.NameIdentifier) ?? "";
}

/// <summary>Authenticates <c>Authorization: Bearer tpk_{keyId}.{secret}</c> against the hashed key documents.</summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IDocumentStore store,
    IMemoryCache cache,
    UnknownKeyLookups lookups) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";

    // Revocation takes effect within this time on every host; the price of not reading PostgreSQL per request.
    static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Every refused key is answered no sooner than this after the request arrived, whether its id exists or not: an
    /// unknown id (a database lookup) and a known one with a wrong secret (the cache) then take the same time.
    /// </summary>
    public static readonly TimeSpan RefusalFloor = TimeSpan.FromMilliseconds(50);

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? header = Request.Headers.Authorization;
        if (string.IsNullOrEmpty(header)) return AuthenticateResult.NoResult();
        var arrived = TimeProvider.System.GetTimestamp();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            || !ApiKeySecrets.TryParse(header["Bearer ".Length..].Trim(), out var keyId, out var secret))
            return await RefuseAsync(arrived, "Malformed API key.");

        var known = await KnownKeyAsync(keyId);
        // An unknown id is checked against a stand-in hash, so its refusal costs the same work as a wrong secret.
        var matches = ApiKeySecrets.Matches(secret, known?.Key.SecretHash ?? UnknownKeyHash);
        if (known is null || known.Key.Revoked || !matches) return await RefuseAsync(arrived, "Unknown or revoked API key.");
        return AuthenticateResult.Success(known.Ticket);
    }

    static readonly string UnknownKeyHash = ApiKeySecrets.Hash(ApiKeySecrets.NewSecret());

    async Task<AuthenticateResult> RefuseAsync(long arrived, string reason)
    {
        // A timer may fire a little before its time as the stopwatch counts it: wait again until the floor has passed.
        for (var left = RefusalFloor - TimeProvider.System.GetElapsedTime(arrived); left > TimeSpan.Zero; left = RefusalFloor - TimeProvider.System.GetElapsedTime(arrived))
            await Task.Delay(left + TimeSpan.FromMilliseconds(1), Context.RequestAborted);
        return AuthenticateResult.Fail(reason);
    }

    /// <summary>
    /// A stored key and the ticket its requests carry, built once per load: serving nodes call on the hot path, and the
    /// claims are the same for every request of a key. Nothing in the pipeline mutates a principal.
    /// </summary>
    sealed record KnownKey(ApiKey Key, AuthenticationTicket Ticket)
    {
        public static KnownKey? Of(ApiKey? key)
        {
            if (key is null) return null;
            List<Claim> claims = [new(ClaimTypes.NameIdentifier, key.Id), new(ClaimTypes.Role, key.Role.ToString())];
            if (key.TenantId is not null) claims.Add(new(PrincipalExtensions.TenantClaim, key.TenantId));
            if (key.Producer is not null) claims.Add(new(PrincipalExtensions.ProducerClaim, key.Producer));
            return new(key, new AuthenticationTicket(new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName)), SchemeName));
        }
    }

    /// <summary>The key with this id, or null: unknown, or the caller's address has used up its lookups of unknown ids.</summary>
    async Task<KnownKey?> KnownKeyAsync(string keyId)
    {
        var cacheKey = "apikey:" + keyId;
        var address = Context.Connection.RemoteIpAddress?.ToString() ?? "";
        var uncached = !cache.TryGetValue(cacheKey, out _);
        if (uncached)
        {
            using var available = lookups.Budget.AttemptAcquire(address, permitCount: 0);
            if (!available.IsAcquired) return null; // this address has looked up enough unknown ids for now
        }
        var known = await LoadCachedAsync(cacheKey, keyId);
        if (uncached && known is null) lookups.Budget.AttemptAcquire(address).Dispose(); // only ids that exist nowhere use up the budget
        return known;
    }

    /// <summary>
    /// The cache holds the load itself, so concurrent requests with an uncached key share one query instead of each
    /// opening a session; a failed load is not cached.
    /// </summary>
    async Task<KnownKey?> LoadCachedAsync(string cacheKey, string keyId)
    {
        var load = cache.GetOrCreate(cacheKey, entry =>
        {
            entry.AbsoluteExpirationRelativeToNow = CacheFor;
            return LoadAsync(store, keyId);
        })!;
        try
        {
            return await load;
        }
        catch
        {
            cache.Remove(cacheKey);
            throw;
        }
    }

    static async Task<KnownKey?> LoadAsync(IDocumentStore store, string keyId)
    {
        // Not the request's token: a load shared by several requests must not fail because the first caller went away.
        await using var session = store.QuerySession();
        return KnownKey.Of(await session.LoadAsync<ApiKey>(keyId));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        await TypedResults.Problem(statusCode: 401, title: "Unauthorized",
            detail: "Send an API key as 'Authorization: Bearer tpk_…'.").ExecuteAsync(Context);
    }

    protected override async Task HandleForbiddenAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status403Forbidden;
        await TypedResults.Problem(statusCode: 403, title: "Forbidden",
            detail: "This API key's role may not call this endpoint.").ExecuteAsync(Context);
    }
}

/// <summary>
/// Key ids that exist nowhere one client address may have the database look up per second: made-up ids cost it little.
/// One budget per host (not per process: hosts sharing a process, as in the tests, must not spend each other's).
/// </summary>
public sealed class UnknownKeyLookups : IDisposable
{
    const int PerSecond = 20;

    public PartitionedRateLimiter<string> Budget { get; } = new DisposedPartitionRetry<string>(PartitionedRateLimiter.Create<string, string>(address =>
        RateLimitPartition.GetTokenBucketLimiter(address, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = PerSecond * 2, TokensPerPeriod = PerSecond, ReplenishmentPeriod = TimeSpan.FromSeconds(1), QueueLimit = 0, AutoReplenishment = true,
        })));

    public void Dispose() => Budget.Dispose();
}

/// <summary>
/// The first operator key comes from configuration (<c>Access:BootstrapOperatorKey</c>, a full <c>tpk_…</c> token);
/// it is stored hashed like any other key, and every other key is issued through the API.
/// </summary>
public sealed class BootstrapOperatorKey(IConfiguration configuration, IDocumentStore store, TimeProvider clock, ILogger<BootstrapOperatorKey> log) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var token = configuration["Access:BootstrapOperatorKey"];
        if (string.IsNullOrEmpty(token)) return;
        if (!ApiKeySecrets.TryParse(token, out var keyId, out var secret))
            throw new InvalidOperationException("Access:BootstrapOperatorKey must look like tpk_{keyId}.{secret}");

        for (var attempt = 1; ; attempt++)
        {
            await using var session = store.LightweightSession();
            if (await session.LoadAsync<ApiKey>(keyId, cancellationToken) is not null) return;
            var staff = await session.Events.FetchForWriting<Staff>(Staff.StreamId, cancellationToken);
            staff.AppendMany(Staff.Issue(staff.Aggregate, keyId, Role.Operator, "bootstrap operator", ApiKeySecrets.Hash(secret), clock.GetUtcNow()));
            try
            {
                await session.SaveChangesAsync(cancellationToken);
                log.LogInformation("Bootstrap operator key {KeyId} registered", keyId);
                return;
            }
            catch (Exception e) when (e is JasperFx.ConcurrencyException or Marten.Exceptions.ExistingStreamIdCollisionException && attempt < MaxAttempts)
            {
                // Another host appended to the staff stream at the same moment, with this key or a key of its own: read again.
            }
        }
    }

    const int MaxAttempts = 10;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
