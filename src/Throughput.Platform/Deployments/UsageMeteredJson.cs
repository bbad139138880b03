using System.Text.Json;
using System.Text.Json.Serialization;

namespace Throughput.Deployments;

/// <summary>
/// <see cref="UsageMetered"/>, nearly every event in the log, read and written field by field. The serializer's own
/// converter for a record of 18 constructor parameters boxes every argument into an array before it calls the
/// constructor, and deserializing usage events was the largest part of a projection rebuild. The JSON is the same:
/// camelCase names in declaration order, <c>months</c> null when absent.
/// </summary>
public sealed class UsageMeteredJson : JsonConverter<UsageMetered>
{
    public override UsageMetered Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException("A usage event is a JSON object.");
        string deploymentId = "";
        IReadOnlyList<ProducerRange> producers = [];
        IReadOnlyList<MonthlyUsage>? months = null;
        long records = 0, prompt = 0, cached = 0, output = 0, spilledRecords = 0, spilledPrompt = 0, spilledCached = 0, spilledOutput = 0, tokensPerMinute = 0;
        decimal weighted = 0, bucketLevel = 0, utilization = 0;
        DateTimeOffset firstStartedAt = default, lastFinishedAt = default, meteredAt = default;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("deploymentId"u8)) { reader.Read(); deploymentId = reader.GetString()!; }
            else if (reader.ValueTextEquals("producers"u8)) { reader.Read(); producers = ReadProducers(ref reader); }
            else if (reader.ValueTextEquals("records"u8)) { reader.Read(); records = reader.GetInt64(); }
            else if (reader.ValueTextEquals("promptTokens"u8)) { reader.Read(); prompt = reader.GetInt64(); }
            else if (reader.ValueTextEquals("cachedTokens"u8)) { reader.Read(); cached = reader.GetInt64(); }
            else if (reader.ValueTextEquals("outputTokens"u8)) { reader.Read(); output = reader.GetInt64(); }
            else if (reader.ValueTextEquals("weightedTokens"u8)) { reader.Read(); weighted = reader.GetDecimal(); }
            else if (reader.ValueTextEquals("spilledRecords"u8)) { reader.Read(); spilledRecords = reader.GetInt64(); }
            else if (reader.ValueTextEquals("spilledPromptTokens"u8)) { reader.Read(); spilledPrompt = reader.GetInt64(); }
            else if (reader.ValueTextEquals("spilledCachedTokens"u8)) { reader.Read(); spilledCached = reader.GetInt64(); }
            else if (reader.ValueTextEquals("spilledOutputTokens"u8)) { reader.Read(); spilledOutput = reader.GetInt64(); }
            else if (reader.ValueTextEquals("firstStartedAt"u8)) { reader.Read(); firstStartedAt = reader.GetDateTimeOffset(); }
            else if (reader.ValueTextEquals("lastFinishedAt"u8)) { reader.Read(); lastFinishedAt = reader.GetDateTimeOffset(); }
            else if (reader.ValueTextEquals("bucketLevel"u8)) { reader.Read(); bucketLevel = reader.GetDecimal(); }
            else if (reader.ValueTextEquals("utilization"u8)) { reader.Read(); utilization = reader.GetDecimal(); }
            else if (reader.ValueTextEquals("tokensPerMinute"u8)) { reader.Read(); tokensPerMinute = reader.GetInt64(); }
            else if (reader.ValueTextEquals("meteredAt"u8)) { reader.Read(); meteredAt = reader.GetDateTimeOffset(); }
            else if (reader.ValueTextEquals("months"u8)) { reader.Read(); months = JsonSerializer.Deserialize<List<MonthlyUsage>>(ref reader, options); }
            else { reader.Read(); reader.Skip(); }
        }
        return new UsageMetered(deploymentId, producers, records, prompt, cached, output, weighted, spilledRecords, spilledPrompt, spilledCached,
            spilledOutput, firstStartedAt, lastFinishedAt, bucketLevel, utilization, tokensPerMinute, meteredAt, months);
    }

    public override void Write(Utf8JsonWriter writer, UsageMetered value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteString("deploymentId"u8, value.DeploymentId);
        writer.WriteStartArray("producers"u8);
        foreach (var range in value.Producers)
        {
            writer.WriteStartObject();
            writer.WriteString("producerId"u8, range.ProducerId);
            writer.WriteNumber("firstSequence"u8, range.FirstSequence);
            writer.WriteNumber("lastSequence"u8, range.LastSequence);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        writer.WriteNumber("records"u8, value.Records);
        writer.WriteNumber("promptTokens"u8, value.PromptTokens);
        writer.WriteNumber("cachedTokens"u8, value.CachedTokens);
        writer.WriteNumber("outputTokens"u8, value.OutputTokens);
        writer.WriteNumber("weightedTokens"u8, value.WeightedTokens);
        writer.WriteNumber("spilledRecords"u8, value.SpilledRecords);
        writer.WriteNumber("spilledPromptTokens"u8, value.SpilledPromptTokens);
        writer.WriteNumber("spilledCachedTokens"u8, value.SpilledCachedTokens);
        writer.WriteNumber("spilledOutputTokens"u8, value.SpilledOutputTokens);
        writer.WriteString("firstStartedAt"u8, value.FirstStartedAt);
        writer.WriteString("lastFinishedAt"u8, value.LastFinishedAt);
        writer.WriteNumber("bucketLevel"u8, value.BucketLevel);
        writer.WriteNumber("utilization"u8, value.Utilization);
        writer.WriteNumber("tokensPerMinute"u8, value.TokensPerMinute);
        writer.WriteString("meteredAt"u8, value.MeteredAt);
        writer.WritePropertyName("months"u8);
        JsonSerializer.Serialize(writer, value.Months, options);
        writer.WriteEndObject();
    }

    // By hand too: the serializer's reader of a list of records builds a frame stack and boxes every argument per event.
    static List<ProducerRange> ReadProducers(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null) return [];
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("A usage event's producers are a JSON array.");
        var ranges = new List<ProducerRange>(2);
        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
        {
            string producerId = "";
            long first = 0, last = 0;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("producerId"u8)) { reader.Read(); producerId = reader.GetString()!; }
                else if (reader.ValueTextEquals("firstSequence"u8)) { reader.Read(); first = reader.GetInt64(); }
                else if (reader.ValueTextEquals("lastSequence"u8)) { reader.Read(); last = reader.GetInt64(); }
                else { reader.Read(); reader.Skip(); }
            }
            ranges.Add(new ProducerRange(producerId, first, last));
        }
        return ranges;
    }
}
