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

    public static string Of(string schema) => $"""
        (select e.seq_id, e.stream_id, e."timestamp", u.data
         from {schema}.mt_events e cross join lateral (
             select o.value as data from jsonb_array_elements(e.data->'usage') o
             union all
             select jsonb_build_object({string.Join(", ", Fields.Select(f => $"'{f}', e.data->'{f}'->(c.n::int - 1)"))})
             from jsonb_array_elements(e.data->'deploymentId') with ordinality c(id, n)) u
         where e.type = 'usage_batch_metered') usage
        """;
}
