using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using JasperFx.Events;
using Marten;
using Marten.Events.Projections;
using Throughput.Http;

namespace Throughput.Access;

public enum Role
{
    Operator,
    Finance,
    Tenant,
    ServingNode,
}

/// <summary>The secret appears in this response only; the platform keeps its hash.</summary>
/// <param name="KeyId">The key's id: the part before the dot, safe to log.</param>
/// <param name="Role">What the key may do.</param>
/// <param name="ApiKey">The whole key, tpk_{keyId}.{secret}: shown once, stored only hashed.</param>
public sealed record IssuedApiKey(string KeyId, Role Role, string ApiKey);

/// <summary>A key as the authentication handler reads it: only the SHA-256 of the secret is stored.</summary>
/// <param name="Producer">For a serving node's key, the producer id it was issued for (its name); null for other keys and for keys stored before.</param>
public sealed record ApiKey(string Id, string? TenantId, Role Role, string SecretHash, bool Revoked, string? Producer = null);

/// <summary>Keys for platform staff and serving nodes (not of any tenant), on the one stream <see cref="Staff.StreamId"/>.</summary>
public abstract record StaffEvent(string KeyId);

public sealed record StaffKeyIssued(string KeyId, Role Role, string Name, string SecretHash, DateTimeOffset IssuedAt) : StaffEvent(KeyId);

public sealed record StaffKeyRevoked(string KeyId, DateTimeOffset RevokedAt) : StaffEvent(KeyId);

public sealed record Staff(string Id, System.Collections.Immutable.ImmutableSortedSet<string> ActiveKeys, long Version)
{
    public const string StreamId = "staff";

    public static Staff Create(StaffKeyIssued e) => new(StreamId, [e.KeyId], 0);

    public Staff Apply(StaffKeyIssued e) => this with { ActiveKeys = ActiveKeys.Add(e.KeyId) };

    public Staff Apply(StaffKeyRevoked e) => this with { ActiveKeys = ActiveKeys.Remove(e.KeyId) };

    /// <summary>The state after one more event of the staff stream, for folds outside Marten's snapshot (which calls Create and Apply itself).</summary>
    public Staff Then(StaffEvent @event) => @event switch
    {
        StaffKeyIssued e => Apply(e),
        StaffKeyRevoked e => Apply(e),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an event of the staff stream"),
    };

    public static StaffEvent[] Issue(Staff? staff, string keyId, Role role, string name, string secretHash, DateTimeOffset now)
    {
        if (role == Role.Tenant) throw RuleViolation.Unprocessable("Tenant keys are issued on the tenant.");
        if (staff?.ActiveKeys.Contains(keyId) == true)
            throw RuleViolation.Conflict($"API key '{keyId}' was already issued; its secret is shown only once.");
        return [new StaffKeyIssued(keyId, role, name, secretHash, now)];
    }

    public static StaffEvent[] Revoke(Staff? staff, string keyId, DateTimeOffset now) =>
        staff?.ActiveKeys.Contains(keyId) == true
            ? [new StaffKeyRevoked(keyId, now)]
            : throw RuleViolation.NotFound($"No active staff API key '{keyId}'.");
}

/// <summary>Bearer tokens look like <c>tpk_{keyId}.{secret}</c>; the key id is public, the secret is 256 random bits.</summary>
public static class ApiKeySecrets
{
    public const string Prefix = "tpk_";

    public static string NewKeyId() => "k" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    /// <summary>A key id that a retried request with the same Idempotency-Key maps to again.</summary>
    public static string KeyIdFor(string scope, string idempotencyKey) =>
        "k" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(scope + "\n" + idempotencyKey)))[..16];

    public static string NewSecret() => Base64Url(RandomNumberGenerator.GetBytes(32));

    public static string Token(string keyId, string secret) => $"{Prefix}{keyId}.{secret}";

    // A fast hash is right here: the secret is random and long, there is nothing to brute-force.
    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    public static bool TryParse(string token, out string keyId, out string secret)
    {
        keyId = secret = "";
        if (!token.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        var dot = token.IndexOf('.', Prefix.Length);
        if (dot <= Prefix.Length || dot == token.Length - 1 || token.Length > 256) return false;
        keyId = token[Prefix.Length..dot];
        secret = token[(dot + 1)..];
        return true;
    }

    /// <summary>Every API call checks its key: hashed and compared on the stack, in constant time.</summary>
    public static bool Matches(string secret, string storedHash)
    {
        if (secret.Length > 256) return false;
        Span<byte> utf8 = stackalloc byte[Encoding.UTF8.GetMaxByteCount(secret.Length)];
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(utf8[..Encoding.UTF8.GetBytes(secret, utf8)], hash);
        Span<char> hex = stackalloc char[SHA256.HashSizeInBytes * 2];
        return Convert.TryToHexStringLower(hash, hex, out _)
            && CryptographicOperations.FixedTimeEquals(MemoryMarshal.AsBytes(hex), MemoryMarshal.AsBytes(storedHash.AsSpan()));
    }

    static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
