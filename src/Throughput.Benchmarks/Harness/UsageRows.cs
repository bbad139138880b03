using Throughput.Deployments;

namespace Throughput.Benchmarks.Harness;

/// <summary>
/// The platform's usage as SQL rows: one per deployment in each usage batch event, with that event's sequence, stream and
/// time, and the deployment's usage as <c>data</c> (an object with the usage event's field names), so queries read per
/// deployment what the log stores per batch: as columns (an array per field), or, in events written before, as an
/// object per deployment.
/// </summary>
public static class UsageRows
{
    static readonly string[] Fields =
    [
        "deploymentId", "tenantId", "records", "promptTokens", "cachedTokens", "outputTokens", "spilledRecords", "spilledPromptTokens",
        "spilledCachedTokens", "spilledOutputTokens", "weightedTokens", "firstStartedAt", "lastFinishedAt", "meteredAt",
    ];

    // The columns are taken out of the event once (the fence, offset 0, keeps PostgreSQL from inlining them into every
    // element's expression, which would decompress the whole event once per field per deployment).
    public static string Of(string schema) => $"""
        (select e.seq_id, e.stream_id, e."timestamp", u.data
         from {schema}.mt_events e cross join lateral (select {UsageBatchMeteredBytes.BodySql("e")} as body offset 0) b cross join lateral (
             select o.value as data from jsonb_array_elements(b.body->'usage') o
             union all
             select jsonb_build_object({string.Join(", ", Fields.Select(f => $"'{f}', {Element(f)}"))})
             from (select {string.Join(", ", Fields.Select(f => $"b.body->'{f}' as \"{f}\""))} offset 0) c
             cross join lateral jsonb_array_elements(c."deploymentId") with ordinality i(id, n)) u
         where e.type = 'usage_batch_metered') usage
        """;

    // meteredAt is one value when the whole batch was metered at one moment; a token count other than records that is 0
    // for every deployment of the batch is left out.
    static string Element(string field) => field switch
    {
        "meteredAt" => $"case when jsonb_typeof(c.\"{field}\") = 'array' then c.\"{field}\"->(i.n::int - 1) else c.\"{field}\" end",
        "promptTokens" or "cachedTokens" or "outputTokens" or "spilledRecords" or "spilledPromptTokens" or "spilledCachedTokens" or "spilledOutputTokens"
            => $"coalesce(c.\"{field}\"->(i.n::int - 1), '0')",
        _ => $"c.\"{field}\"->(i.n::int - 1)",
    };
}
