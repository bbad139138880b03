using System.Text.Json;
using System.Text.Json.Serialization;

namespace Throughput.Deployments;

/// <summary>
/// <see cref="UsageMetered"/>, nearly every event in the log, read and written field by field. The serializer's own
/// converter for a record of 18 constructor parameters boxes every argument into an array before it calls the
/// constructor, and deserializing usage events was the largest part of a projection rebuild. The JSON is flat, as the
/// events were first written: the token counts are fields of the event and of each month; <c>months</c> null when absent;
/// <c>tenantId</c> absent in events written before usage named its tenant.
/// </summary>
public sealed class UsageMeteredJson : JsonConverter<UsageMetered>
{
    public override UsageMetered Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException("A usage event is a JSON object.");
        string deploymentId = "";
        string? tenantId = null;
        IReadOnlyList<ProducerRange> producers = [];
        IReadOnlyList<MonthlyUsage>? months = null;
        List<AdapterUsage>? adapters = null;
        TokenCounts tokens = default;
        long tokensPerMinute = 0;
        decimal weighted = 0, bucketLevel = 0, utilization = 0;
        DateTimeOffset firstStartedAt = default, lastFinishedAt = default, meteredAt = default;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (TokenCountsJson.TryRead(ref reader, ref tokens)) continue;
            if (reader.ValueTextEquals("deploymentId"u8)) { reader.Read(); deploymentId = reader.GetString()!; }
            else if (reader.ValueTextEquals("tenantId"u8)) { reader.Read(); tenantId = reader.GetString(); }
            else if (reader.ValueTextEquals("producers"u8)) { reader.Read(); producers = ReadProducers(ref reader); }
            else if (reader.ValueTextEquals("weightedTokens"u8)) { reader.Read(); weighted = reader.GetDecimal(); }
            else if (reader.ValueTextEquals("firstStartedAt"u8)) { reader.Read(); firstStartedAt = reader.GetDateTimeOffset(); }
            else if (reader.ValueTextEquals("lastFinishedAt"u8)) { reader.Read(); lastFinishedAt = reader.GetDateTimeOffset(); }
            else if (reader.ValueTextEquals("bucketLevel"u8)) { reader.Read(); bucketLevel = reader.GetDecimal(); }
            else if (reader.ValueTextEquals("utilization"u8)) { reader.Read(); utilization = reader.GetDecimal(); }
            else if (reader.ValueTextEquals("tokensPerMinute"u8)) { reader.Read(); tokensPerMinute = reader.GetInt64(); }
            else if (reader.ValueTextEquals("meteredAt"u8)) { reader.Read(); meteredAt = reader.GetDateTimeOffset(); }
            else if (reader.ValueTextEquals("months"u8)) { reader.Read(); months = ReadMonths(ref reader); }
            else if (reader.ValueTextEquals("adapters"u8)) { reader.Read(); adapters = ReadAdapters(ref reader); }
            else { reader.Read(); reader.Skip(); }
        }
        return new UsageMetered(deploymentId, tenantId, producers, tokens, weighted, firstStartedAt, lastFinishedAt, bucketLevel, utilization,
            tokensPerMinute, meteredAt, months, adapters);
    }

    public override void Write(Utf8JsonWriter writer, UsageMetered value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteString("deploymentId"u8, value.DeploymentId);
        if (value.TenantId is not null) writer.WriteString("tenantId"u8, value.TenantId);
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
        TokenCountsJson.Write(writer, value.Tokens);
        writer.WriteNumber("weightedTokens"u8, value.WeightedTokens);
        writer.WriteString("firstStartedAt"u8, value.FirstStartedAt);
        writer.WriteString("lastFinishedAt"u8, value.LastFinishedAt);
        writer.WriteNumber("bucketLevel"u8, value.BucketLevel);
        writer.WriteNumber("utilization"u8, value.Utilization);
        writer.WriteNumber("tokensPerMinute"u8, value.TokensPerMinute);
        writer.WriteString("meteredAt"u8, value.MeteredAt);
        writer.WritePropertyName("months"u8);
        WriteMonths(writer, value.Months);
        if (value.Adapters is not null) // absent from usage of deployments without adapters, as before adapters existed
        {
            writer.WritePropertyName("adapters"u8);
            WriteAdapters(writer, value.Adapters);
        }
        writer.WriteEndObject();
    }

    internal static void WriteMonths(Utf8JsonWriter writer, IReadOnlyList<MonthlyUsage>? months)
    {
        if (months is null)
        {
            writer.WriteNullValue();
            return;
        }
        writer.WriteStartArray();
        foreach (var month in months)
        {
            writer.WriteStartObject();
            writer.WriteString("month"u8, month.Month);
            TokenCountsJson.Write(writer, month.Tokens);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
    }

    internal static void WriteAdapters(Utf8JsonWriter writer, IReadOnlyList<AdapterUsage>? adapters)
    {
        if (adapters is null)
        {
            writer.WriteNullValue();
            return;
        }
        writer.WriteStartArray();
        foreach (var adapter in adapters)
        {
            writer.WriteStartObject();
            writer.WriteString("adapterId"u8, adapter.AdapterId);
            writer.WriteString("month"u8, adapter.Month);
            TokenCountsJson.Write(writer, adapter.Tokens);
            writer.WriteNumber("weightedTokens"u8, adapter.WeightedTokens);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
    }

    internal static List<AdapterUsage>? ReadAdapters(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("A usage event's adapters are a JSON array.");
        var adapters = new List<AdapterUsage>();
        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
        {
            string adapterId = "", month = "";
            TokenCounts tokens = default;
            decimal weighted = 0;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (TokenCountsJson.TryRead(ref reader, ref tokens)) continue;
                if (reader.ValueTextEquals("adapterId"u8)) { reader.Read(); adapterId = reader.GetString()!; }
                else if (reader.ValueTextEquals("month"u8)) { reader.Read(); month = reader.GetString()!; }
                else if (reader.ValueTextEquals("weightedTokens"u8)) { reader.Read(); weighted = reader.GetDecimal(); }
                else { reader.Read(); reader.Skip(); }
            }
            adapters.Add(new AdapterUsage(adapterId, month, tokens, weighted));
        }
        return adapters;
    }

    internal static List<MonthlyUsage>? ReadMonths(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("A usage event's months are a JSON array.");
        var months = new List<MonthlyUsage>(2);
        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
        {
            string month = "";
            TokenCounts tokens = default;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (TokenCountsJson.TryRead(ref reader, ref tokens)) continue;
                if (reader.ValueTextEquals("month"u8)) { reader.Read(); month = reader.GetString()!; }
                else { reader.Read(); reader.Skip(); }
            }
            months.Add(new MonthlyUsage(month, tokens));
        }
        return months;
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
