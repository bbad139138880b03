using System.Text.Json;
using System.Text.Json.Serialization;

namespace Throughput.Deployments;

/// <summary>
/// Usage as counted: records and tokens by type, all of them and the part served by spillover (billed per token). One value
/// for a record, a usage event, a deployment's totals, a minute, an hour and an invoice's usage; a struct, so summing
/// records on the metering path allocates nothing.
/// </summary>
/// <param name="Records">Metering records (requests).</param>
/// <param name="PromptTokens">Prompt tokens, cached ones included.</param>
/// <param name="CachedTokens">Prompt tokens served from the prompt cache.</param>
/// <param name="OutputTokens">Generated tokens.</param>
/// <param name="SpilledRecords">Of the records, those served past the purchased rate.</param>
/// <param name="SpilledPromptTokens">Their prompt tokens.</param>
/// <param name="SpilledCachedTokens">Their cached prompt tokens.</param>
/// <param name="SpilledOutputTokens">Their generated tokens.</param>
public readonly record struct TokenCounts(
    long Records,
    long PromptTokens,
    long CachedTokens,
    long OutputTokens,
    long SpilledRecords,
    long SpilledPromptTokens,
    long SpilledCachedTokens,
    long SpilledOutputTokens)
{
    public static TokenCounts operator +(TokenCounts a, TokenCounts b) => new(
        a.Records + b.Records, a.PromptTokens + b.PromptTokens, a.CachedTokens + b.CachedTokens, a.OutputTokens + b.OutputTokens,
        a.SpilledRecords + b.SpilledRecords, a.SpilledPromptTokens + b.SpilledPromptTokens, a.SpilledCachedTokens + b.SpilledCachedTokens,
        a.SpilledOutputTokens + b.SpilledOutputTokens);

    /// <summary>Spilled input tokens, as spillover prices them: prompt minus cached.</summary>
    [JsonIgnore]
    public long SpilledInputTokens => SpilledPromptTokens - SpilledCachedTokens;

    /// <summary>Only the spilled part: what an invoice bills per token.</summary>
    [JsonIgnore]
    public TokenCounts Spill => new(0, 0, 0, 0, SpilledRecords, SpilledPromptTokens, SpilledCachedTokens, SpilledOutputTokens);

    /// <summary>These counts with the spilled part as <paramref name="spill"/>'s.</summary>
    public TokenCounts WithSpill(TokenCounts spill) => this with
    {
        SpilledRecords = spill.SpilledRecords, SpilledPromptTokens = spill.SpilledPromptTokens,
        SpilledCachedTokens = spill.SpilledCachedTokens, SpilledOutputTokens = spill.SpilledOutputTokens,
    };

    /// <summary>Whether any tokens were spilled (and so billed per token).</summary>
    public bool HasSpill => SpilledPromptTokens != 0 || SpilledOutputTokens != 0 || SpilledCachedTokens != 0;
}

/// <summary>
/// Token counts as flat fields of the object that holds them (<c>records</c>, <c>promptTokens</c>, …): the stored usage
/// events keep the shape they were written in.
/// </summary>
public static class TokenCountsJson
{
    public static void Write(Utf8JsonWriter writer, in TokenCounts t)
    {
        writer.WriteNumber("records"u8, t.Records);
        writer.WriteNumber("promptTokens"u8, t.PromptTokens);
        writer.WriteNumber("cachedTokens"u8, t.CachedTokens);
        writer.WriteNumber("outputTokens"u8, t.OutputTokens);
        writer.WriteNumber("spilledRecords"u8, t.SpilledRecords);
        writer.WriteNumber("spilledPromptTokens"u8, t.SpilledPromptTokens);
        writer.WriteNumber("spilledCachedTokens"u8, t.SpilledCachedTokens);
        writer.WriteNumber("spilledOutputTokens"u8, t.SpilledOutputTokens);
    }

    /// <summary>Reads the value of the property the reader is on into <paramref name="t"/> if it is a count; false if it is not one.</summary>
    public static bool TryRead(ref Utf8JsonReader reader, ref TokenCounts t)
    {
        if (reader.ValueTextEquals("records"u8)) t = t with { Records = Next(ref reader) };
        else if (reader.ValueTextEquals("promptTokens"u8)) t = t with { PromptTokens = Next(ref reader) };
        else if (reader.ValueTextEquals("cachedTokens"u8)) t = t with { CachedTokens = Next(ref reader) };
        else if (reader.ValueTextEquals("outputTokens"u8)) t = t with { OutputTokens = Next(ref reader) };
        else if (reader.ValueTextEquals("spilledRecords"u8)) t = t with { SpilledRecords = Next(ref reader) };
        else if (reader.ValueTextEquals("spilledPromptTokens"u8)) t = t with { SpilledPromptTokens = Next(ref reader) };
        else if (reader.ValueTextEquals("spilledCachedTokens"u8)) t = t with { SpilledCachedTokens = Next(ref reader) };
        else if (reader.ValueTextEquals("spilledOutputTokens"u8)) t = t with { SpilledOutputTokens = Next(ref reader) };
        else return false;
        return true;
    }

    static long Next(ref Utf8JsonReader reader)
    {
        reader.Read();
        return reader.GetInt64();
    }
}

/// <summary>Token counts as columns of the read models' own tables (minutes, hours): their names, their unnest arrays, and the JSON that reads them back.</summary>
public static class TokenCountColumns
{
    public static readonly string[] Names =
        ["records", "prompt_tokens", "cached_tokens", "output_tokens", "spilled_records", "spilled_prompt_tokens", "spilled_cached_tokens", "spilled_output_tokens"];

    /// <summary>The columns as the JSON object a <see cref="TokenCounts"/> is read from.</summary>
    public static readonly string Json =
        "json_build_object('records', records, 'promptTokens', prompt_tokens, 'cachedTokens', cached_tokens, 'outputTokens', output_tokens, " +
        "'spilledRecords', spilled_records, 'spilledPromptTokens', spilled_prompt_tokens, 'spilledCachedTokens', spilled_cached_tokens, 'spilledOutputTokens', spilled_output_tokens)";

    /// <summary>The placeholders of the columns' arrays in an unnest, in <see cref="Names"/>' order.</summary>
    public static readonly string Parameters = string.Join(", ", Names.Select(_ => "?::bigint[]"));

    /// <summary>The rows' counts as one array per column, in <see cref="Names"/>' order.</summary>
    public static object[] Arrays<T>(IReadOnlyCollection<T> rows, Func<T, TokenCounts> tokens)
    {
        var counts = rows.Select(tokens).ToArray();
        return
        [
            counts.Select(t => t.Records).ToArray(), counts.Select(t => t.PromptTokens).ToArray(), counts.Select(t => t.CachedTokens).ToArray(),
            counts.Select(t => t.OutputTokens).ToArray(), counts.Select(t => t.SpilledRecords).ToArray(), counts.Select(t => t.SpilledPromptTokens).ToArray(),
            counts.Select(t => t.SpilledCachedTokens).ToArray(), counts.Select(t => t.SpilledOutputTokens).ToArray(),
        ];
    }
}
