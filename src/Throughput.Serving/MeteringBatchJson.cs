using System.Buffers;
using System.Text.Json;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// Writes a metering batch as contracts/schemas/metering-batch.v1.json names it, field by field, so a port to
/// another language can follow the schema and this file side by side. No reflection, no per-record allocation.
/// </summary>
internal static class MeteringBatchJson
{
    // Bytes per record are about 300 with typical ids; a good first guess saves a regrow of the pooled buffer.
    const int BytesPerRecordGuess = 320;

    static readonly JsonEncodedText Version = JsonEncodedText.Encode("version");
    static readonly JsonEncodedText ProducerId = JsonEncodedText.Encode("producerId");
    static readonly JsonEncodedText Sequence = JsonEncodedText.Encode("sequence");
    static readonly JsonEncodedText SentAt = JsonEncodedText.Encode("sentAt");
    static readonly JsonEncodedText Records = JsonEncodedText.Encode("records");
    static readonly JsonEncodedText RecordId = JsonEncodedText.Encode("recordId");
    static readonly JsonEncodedText DeploymentId = JsonEncodedText.Encode("deploymentId");
    static readonly JsonEncodedText RequestId = JsonEncodedText.Encode("requestId");
    static readonly JsonEncodedText PromptTokens = JsonEncodedText.Encode("promptTokens");
    static readonly JsonEncodedText CachedTokens = JsonEncodedText.Encode("cachedTokens");
    static readonly JsonEncodedText OutputTokens = JsonEncodedText.Encode("outputTokens");
    static readonly JsonEncodedText Spilled = JsonEncodedText.Encode("spilled");
    static readonly JsonEncodedText EstimatedTokens = JsonEncodedText.Encode("estimatedTokens");
    static readonly JsonEncodedText StartedAt = JsonEncodedText.Encode("startedAt");
    static readonly JsonEncodedText FinishedAt = JsonEncodedText.Encode("finishedAt");
    static readonly JsonEncodedText AdapterId = JsonEncodedText.Encode("adapterId");
    static readonly JsonEncodedText Phase = JsonEncodedText.Encode("phase");

    /// <summary>The batch's JSON in a buffer rented from the shared pool; dispose it once the broker has confirmed.</summary>
    public static PooledBody Serialize(string producerId, SealedBatch batch)
    {
        var body = new PooledBody(128 + batch.Records.Count * BytesPerRecordGuess);
        Write(body, producerId, batch.Sequence, batch.SentAt, batch.Records);
        return body;
    }

    public static void Write(IBufferWriter<byte> output, string producerId, long sequence, DateTimeOffset sentAt, IReadOnlyList<MeteringRecord> records)
    {
        using var json = new Utf8JsonWriter(output);
        json.WriteStartObject();
        json.WriteNumber(Version, MeteringTopology.CurrentVersion);
        json.WriteString(ProducerId, producerId);
        json.WriteNumber(Sequence, sequence);
        json.WriteString(SentAt, sentAt); // ISO 8601, round-trip precision
        json.WriteStartArray(Records);
        for (var i = 0; i < records.Count; i++)
        {
            var record = records[i];
            json.WriteStartObject();
            json.WriteString(RecordId, record.RecordId);
            json.WriteString(DeploymentId, record.DeploymentId);
            json.WriteString(RequestId, record.RequestId);
            json.WriteNumber(PromptTokens, record.PromptTokens);
            json.WriteNumber(CachedTokens, record.CachedTokens);
            json.WriteNumber(OutputTokens, record.OutputTokens);
            json.WriteBoolean(Spilled, record.Spilled);
            json.WriteNumber(EstimatedTokens, record.EstimatedTokens);
            json.WriteString(StartedAt, record.StartedAt);
            json.WriteString(FinishedAt, record.FinishedAt);
            if (record.AdapterId is not null) json.WriteString(AdapterId, record.AdapterId);
            if (record.Phase is not null) json.WriteString(Phase, record.Phase);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
    }
}

/// <summary>A growable byte buffer on <see cref="ArrayPool{T}.Shared"/>: the body of one batch, kept for republishes until confirmed.</summary>
internal sealed class PooledBody(int initialSize) : IBufferWriter<byte>, IDisposable
{
    byte[] _bytes = ArrayPool<byte>.Shared.Rent(initialSize);
    int _written;

    public ReadOnlyMemory<byte> Memory => _bytes.AsMemory(0, _written);

    public void Advance(int count) => _written += count;

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        EnsureRoom(sizeHint);
        return _bytes.AsMemory(_written);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        EnsureRoom(sizeHint);
        return _bytes.AsSpan(_written);
    }

    public void Dispose()
    {
        if (_bytes.Length == 0) return;
        ArrayPool<byte>.Shared.Return(_bytes);
        _bytes = [];
        _written = 0;
    }

    void EnsureRoom(int sizeHint)
    {
        var needed = Math.Max(sizeHint, 1);
        if (_bytes.Length - _written >= needed) return;
        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_bytes.Length * 2, _written + needed));
        _bytes.AsSpan(0, _written).CopyTo(larger);
        ArrayPool<byte>.Shared.Return(_bytes);
        _bytes = larger;
    }
}
