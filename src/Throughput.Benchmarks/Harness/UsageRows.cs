namespace Throughput.Benchmarks.Harness;

/// <summary>
/// The platform's usage as SQL rows: one per deployment in each usage batch event, with that event's sequence, stream and
/// time, and the deployment's usage as <c>data</c>, so queries read per deployment what the log stores per batch.
/// </summary>
public static class UsageRows
{
    public static string Of(string schema) => $"""
        (select e.seq_id, e.stream_id, e."timestamp", u.value as data
         from {schema}.mt_events e cross join lateral jsonb_array_elements(e.data->'usage') u
         where e.type = 'usage_batch_metered') usage
        """;
}
