using System.Security.Cryptography;
using System.Text;

namespace Throughput.Webhooks;

/// <summary>
/// Signatures as the Standard Webhooks specification defines them, so any of its libraries verifies ours: HMAC-SHA256 over
/// <c>{webhook-id}.{webhook-timestamp}.{body}</c> with the secret's bytes (the base64 after <c>whsec_</c>), sent as
/// <c>v1,{base64}</c>, several separated by spaces while a rotated-out secret is still in its grace.
/// </summary>
public static class Signatures
{
    const string SecretPrefix = "whsec_";

    public static string NewSecret() => SecretPrefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    public static string Sign(string secret, string messageId, long timestamp, string body)
    {
        var key = Convert.FromBase64String(secret[SecretPrefix.Length..]);
        var signed = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{messageId}.{timestamp}.{body}"));
        return "v1," + Convert.ToBase64String(signed);
    }

    public static string Header(IEnumerable<string> secrets, string messageId, long timestamp, string body) =>
        string.Join(' ', secrets.Select(s => Sign(s, messageId, timestamp, body)));
}

/// <summary>
/// Signing secrets at rest: AES-256-GCM under the operator's <c>Webhooks:SecretKey</c> (32 bytes, base64). Every host with
/// the key can sign; a copy of the database alone cannot. Stored as base64 of nonce, ciphertext and tag.
/// </summary>
public sealed class SecretBox(byte[] key)
{
    const int NonceSize = 12;
    const int TagSize = 16;

    public string Seal(string secret)
    {
        var plain = Encoding.UTF8.GetBytes(secret);
        var sealedBytes = new byte[NonceSize + plain.Length + TagSize];
        var nonce = sealedBytes.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, plain, sealedBytes.AsSpan(NonceSize, plain.Length), sealedBytes.AsSpan(NonceSize + plain.Length));
        return Convert.ToBase64String(sealedBytes);
    }

    public string Open(string sealedSecret)
    {
        var bytes = Convert.FromBase64String(sealedSecret);
        var plain = new byte[bytes.Length - NonceSize - TagSize];
        using var aes = new AesGcm(key, TagSize);
        aes.Decrypt(bytes.AsSpan(0, NonceSize), bytes.AsSpan(NonceSize, plain.Length), bytes.AsSpan(NonceSize + plain.Length), plain);
        return Encoding.UTF8.GetString(plain);
    }
}
