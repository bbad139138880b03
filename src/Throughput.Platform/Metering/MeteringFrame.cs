using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Throughput.Capacity;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Nodes;

namespace Throughput.Metering;

/// <summary>One metering record as ingestion sees it: parsed, bounded, and either valid or carrying the reason it is not.</summary>
public readonly record struct MeteredRecord(
    string RecordId,
    string DeploymentId,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    bool Spilled,
    long EstimatedTokens,
    DateTimeOffset StartedAt,
    DateTimeOffset FinishedAt,
    string? Problem,
    string? AdapterId = null,
    ServingPhase Phase = ServingPhase.Whole)
{
    /// <summary>A phase-split request counts once, from its prompt half: the generation half brings only its output tokens.</summary>
    public TokenCounts Counts
    {
        get
        {
            var requests = Phase == ServingPhase.Generation ? 0 : 1;
            return Spilled
                ? new(requests, PromptTokens, CachedTokens, OutputTokens, requests, PromptTokens, CachedTokens, OutputTokens)
                : new(requests, PromptTokens, CachedTokens, OutputTokens, 0, 0, 0, 0);
        }
    }

    /// <summary>
    /// Why the record is not the node's to meter, by phase; null when it is. A record names its node's phase, and each
    /// half carries only its own tokens, so that each token of a phase-split request is counted by exactly one of its nodes.
    /// </summary>
    public string? PhaseProblemFrom(ServingNode sender) => (sender.Phase, Phase) switch
    {
        var (node, record) when node != record =>
            $"serving node '{sender.ProducerId}' serves {Name(node)}; the record says {Name(record)}",
        (ServingPhase.Prompt, _) when OutputTokens != 0 => $"a prompt server reported {OutputTokens} output tokens",
        (ServingPhase.Generation, _) when PromptTokens != 0 => $"a generation server reported {PromptTokens} prompt tokens",
        _ => null,
    };

    static string Name(ServingPhase phase) => phase switch
    {
        ServingPhase.Prompt => "the prompt phase",
        ServingPhase.Generation => "the generation phase",
        _ => "whole requests",
    };
}

/// <summary>
/// A metering batch off the wire (<see cref="MeteringBatch"/> v1 JSON), read by <see cref="MeteringFrameReader"/> without
/// throwing on bad content: a malformed message carries <see cref="Problem"/>, a malformed record its own.
/// </summary>
[JsonConverter(typeof(MeteringFrameReader))]
public sealed class MeteringFrame
{
    public int Version { get; init; }
    public string ProducerId { get; init; } = "";
    public long Sequence { get; init; }
    public DateTimeOffset SentAt { get; init; }
    public IReadOnlyList<MeteredRecord> Records { get; init; } = [];
    public string? Problem { get; init; }
}

/// <summary>Reads metering JSON field by field with <see cref="Utf8JsonReader"/>: no intermediate objects, one string per record id.</summary>
public sealed class MeteringFrameReader : JsonConverter<MeteringFrame>
{
    public const int MaxRecords = 10_000;
    public const long MaxTokens = 10_000_000;
    public const long MaxEstimate = 1_000_000_000;
    const int MaxIdLength = 128;

    /// <summary>The characters an id may hold: letters, digits and <c>-_.:</c>.</summary>
    static readonly SearchValues<byte> IdBytes = SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"u8);

    [ThreadStatic] static List<MeteredRecord>? _records;

    public override MeteringFrame Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return new MeteringFrame { Problem = "the message is not a JSON object" };
        }
        int? version = null;
        string? producerId = null, problem = null;
        long? sequence = null;
        DateTimeOffset? sentAt = null;
        // Grown once per thread and copied out at its size: a list grown from empty per message allocated about four times
        // what the records take, most of what reading a message allocated.
        var records = _records ??= new List<MeteredRecord>(256);
        records.Clear(); // a message that failed to parse left its records
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("version"u8)) { reader.Read(); version = reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var v) ? v : -1; }
            else if (reader.ValueTextEquals("producerId"u8)) { reader.Read(); producerId = ReadId(ref reader); }
            else if (reader.ValueTextEquals("sequence"u8)) { reader.Read(); sequence = reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var s) && s > 0 ? s : -1; }
            else if (reader.ValueTextEquals("sentAt"u8)) { reader.Read(); sentAt = ReadTime(ref reader); }
            else if (reader.ValueTextEquals("records"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.StartArray) { reader.Skip(); problem ??= "records must be an array"; continue; }
                string? lastDeployment = null;
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (records.Count == MaxRecords) { problem = $"the batch has more than {MaxRecords} records"; reader.Skip(); continue; }
                    records.Add(ReadRecord(ref reader, ref lastDeployment));
                }
            }
            else { reader.Read(); reader.Skip(); }
        }

        problem ??= version switch
        {
            null => "version is missing",
            MeteringTopology.CurrentVersion => null,
            _ => $"version {(version < 0 ? "is not an integer" : version.ToString())} is not supported (expected {MeteringTopology.CurrentVersion})",
        };
        problem ??= producerId is null or "" ? "producerId is missing or malformed" : null;
        problem ??= sequence is null or < 1 ? "sequence is missing or not a positive integer" : null;
        problem ??= sentAt is null || sentAt == default ? "sentAt is missing or not an ISO 8601 time" : null;
        problem ??= records.Count == 0 ? "the batch has no records" : null;
        var read = records.ToArray();
        records.Clear(); // so that the thread's list keeps no record's strings alive until its next message
        return new MeteringFrame
        {
            Version = version ?? 0,
            ProducerId = producerId ?? "",
            Sequence = sequence ?? 0,
            SentAt = sentAt ?? default,
            Records = read,
            Problem = problem,
        };
    }

    static MeteredRecord ReadRecord(ref Utf8JsonReader reader, ref string? lastDeployment)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return new MeteredRecord("", "", 0, 0, 0, false, 0, default, default, "the record is not a JSON object");
        }
        string? recordId = null, deploymentId = null, problem = null, adapterId = null;
        var phase = ServingPhase.Whole;
        long prompt = -1, cached = -1, output = -1, estimate = 0;
        bool? spilled = null;
        DateTimeOffset? started = null, finished = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var field = FieldOf(ref reader);
            reader.Read();
            switch (field)
            {
                case RecordField.RecordId: recordId = ReadId(ref reader); break;
                case RecordField.DeploymentId:
                    // Consecutive records often name the same deployment: its string is reused instead of allocated per record.
                    deploymentId = lastDeployment is not null && reader is { TokenType: JsonTokenType.String, ValueIsEscaped: false, HasValueSequence: false }
                        && Ascii.Equals(reader.ValueSpan, lastDeployment) // ids are ASCII: compared without transcoding either
                        ? lastDeployment
                        : lastDeployment = ReadId(ref reader);
                    break;
                case RecordField.PromptTokens: prompt = ReadCount(ref reader, MaxTokens, "promptTokens", ref problem); break;
                case RecordField.CachedTokens: cached = ReadCount(ref reader, MaxTokens, "cachedTokens", ref problem); break;
                case RecordField.OutputTokens: output = ReadCount(ref reader, MaxTokens, "outputTokens", ref problem); break;
                case RecordField.EstimatedTokens: estimate = ReadCount(ref reader, MaxEstimate, "estimatedTokens", ref problem); break;
                case RecordField.Spilled: spilled = reader.TokenType is JsonTokenType.True or JsonTokenType.False ? reader.GetBoolean() : null; break;
                case RecordField.StartedAt: started = ReadTime(ref reader); break;
                case RecordField.FinishedAt: finished = ReadTime(ref reader); break;
                case RecordField.AdapterId:
                    if (reader.TokenType != JsonTokenType.Null) adapterId = ReadId(ref reader) ?? "";
                    break;
                case RecordField.Phase:
                    if (reader.TokenType == JsonTokenType.Null) break;
                    if (reader.TokenType == JsonTokenType.String && reader.ValueTextEquals("prompt"u8)) phase = ServingPhase.Prompt;
                    else if (reader.TokenType == JsonTokenType.String && reader.ValueTextEquals("generation"u8)) phase = ServingPhase.Generation;
                    else { reader.Skip(); problem ??= "phase is neither 'prompt' nor 'generation'"; }
                    break;
                default: reader.Skip(); break;
            }
        }
        problem ??= recordId is null ? "recordId is missing or malformed" : null;
        problem ??= deploymentId is null ? "deploymentId is missing or malformed" : null;
        problem ??= prompt < 0 ? "promptTokens is missing" : cached < 0 ? "cachedTokens is missing" : output < 0 ? "outputTokens is missing" : null;
        problem ??= cached > prompt ? "cachedTokens exceeds promptTokens" : null;
        problem ??= spilled is null ? "spilled is missing or not a boolean" : null;
        problem ??= started is null || finished is null ? "startedAt or finishedAt is missing or not an ISO 8601 time" : null;
        problem ??= finished < started ? "finishedAt is before startedAt" : null;
        problem ??= adapterId == "" ? "adapterId is malformed" : null;
        return new MeteredRecord(recordId ?? "", deploymentId ?? "", Math.Max(prompt, 0), Math.Max(cached, 0), Math.Max(output, 0),
            spilled ?? false, estimate, started ?? default, finished ?? default, problem, adapterId, phase);
    }

    enum RecordField { Unknown, RecordId, DeploymentId, PromptTokens, CachedTokens, OutputTokens, EstimatedTokens, Spilled, StartedAt, FinishedAt, AdapterId, Phase }

    /// <summary>
    /// The record field a property names: by its length and first byte, then one comparison, since every record of a
    /// message repeats every name and a chain of comparisons per property was a measurable part of reading a message.
    /// </summary>
    static RecordField FieldOf(ref Utf8JsonReader reader)
    {
        if (reader.ValueIsEscaped) return EscapedFieldOf(ref reader);
        var name = reader.ValueSpan;
        var field = (name.Length, name.Length == 0 ? (byte)0 : name[0]) switch
        {
            (5, (byte)'p') => RecordField.Phase,
            (7, (byte)'s') => RecordField.Spilled,
            (8, (byte)'r') => RecordField.RecordId,
            (9, (byte)'s') => RecordField.StartedAt,
            (9, (byte)'a') => RecordField.AdapterId,
            (10, (byte)'f') => RecordField.FinishedAt,
            (12, (byte)'d') => RecordField.DeploymentId,
            (12, (byte)'p') => RecordField.PromptTokens,
            (12, (byte)'c') => RecordField.CachedTokens,
            (12, (byte)'o') => RecordField.OutputTokens,
            (15, (byte)'e') => RecordField.EstimatedTokens,
            _ => RecordField.Unknown,
        };
        return name.SequenceEqual(NameOf(field)) ? field : RecordField.Unknown;
    }

    static ReadOnlySpan<byte> NameOf(RecordField field) => field switch
    {
        RecordField.RecordId => "recordId"u8,
        RecordField.DeploymentId => "deploymentId"u8,
        RecordField.PromptTokens => "promptTokens"u8,
        RecordField.CachedTokens => "cachedTokens"u8,
        RecordField.OutputTokens => "outputTokens"u8,
        RecordField.EstimatedTokens => "estimatedTokens"u8,
        RecordField.Spilled => "spilled"u8,
        RecordField.StartedAt => "startedAt"u8,
        RecordField.FinishedAt => "finishedAt"u8,
        RecordField.AdapterId => "adapterId"u8,
        RecordField.Phase => "phase"u8,
        _ => default,
    };

    /// <summary>A property name written with escapes (legal JSON, never the SDK's) compared as its unescaped text.</summary>
    static RecordField EscapedFieldOf(ref Utf8JsonReader reader)
    {
        for (var field = RecordField.RecordId; field <= RecordField.Phase; field++)
            if (reader.ValueTextEquals(NameOf(field))) return field;
        return RecordField.Unknown;
    }

    static long ReadCount(ref Utf8JsonReader reader, long max, string field, ref string? problem)
    {
        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out var value))
        {
            reader.Skip();
            problem ??= $"{field} is not an integer";
            return 0;
        }
        if (value < 0) problem ??= $"{field} is negative ({value})";
        else if (value > max) problem ??= $"{field} is implausibly large ({value} > {max})";
        return value;
    }

    static string? ReadId(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String || reader.ValueSpan.Length is 0 or > MaxIdLength || reader.ValueIsEscaped)
        {
            reader.Skip();
            return null;
        }
        return reader.ValueSpan.ContainsAnyExcept(IdBytes) ? null : reader.GetString();
    }

    static DateTimeOffset? ReadTime(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.String && reader.TryGetDateTimeOffset(out var value)) return value;
        reader.Skip();
        return null;
    }

    /// <summary>Written back as the v1 contract (MassTransit serialises messages into fault events).</summary>
    public override void Write(Utf8JsonWriter writer, MeteringFrame value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteNumber("version"u8, value.Version);
        writer.WriteString("producerId"u8, value.ProducerId);
        writer.WriteNumber("sequence"u8, value.Sequence);
        writer.WriteString("sentAt"u8, value.SentAt);
        writer.WriteStartArray("records"u8);
        foreach (var r in value.Records)
        {
            writer.WriteStartObject();
            writer.WriteString("recordId"u8, r.RecordId);
            writer.WriteString("deploymentId"u8, r.DeploymentId);
            writer.WriteNumber("promptTokens"u8, r.PromptTokens);
            writer.WriteNumber("cachedTokens"u8, r.CachedTokens);
            writer.WriteNumber("outputTokens"u8, r.OutputTokens);
            writer.WriteBoolean("spilled"u8, r.Spilled);
            writer.WriteNumber("estimatedTokens"u8, r.EstimatedTokens);
            writer.WriteString("startedAt"u8, r.StartedAt);
            writer.WriteString("finishedAt"u8, r.FinishedAt);
            if (r.AdapterId is not null) writer.WriteString("adapterId"u8, r.AdapterId);
            if (r.Phase != ServingPhase.Whole) writer.WriteString("phase"u8, r.Phase == ServingPhase.Prompt ? "prompt" : "generation");
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
    }
}
