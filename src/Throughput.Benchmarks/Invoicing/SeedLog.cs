using Npgsql;
using Throughput.Deployments;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>
/// Grows the benchmark schema's event log for the rebuild measurement: copies of the run's own usage events appended
/// to the same streams with new sequence numbers and stream versions, as if metering had gone on longer.
/// Only ever used on the benchmark's own schema, with its host stopped.
/// </summary>
public static class SeedLog
{
    public static async Task<long> GrowAsync(string connectionString, string schema, IReadOnlyList<string> deployments, long atLeast, CancellationToken ct)
    {
        if (deployments.Count == 0) return 0;
        await using var database = NpgsqlDataSource.Create(connectionString);
        long copied = 0;
        while (true)
        {
            await using var count = database.CreateCommand($"select count(*) from {schema}.mt_events where type = 'usage_batch_metered'");
            var existing = (long)(await count.ExecuteScalarAsync(ct))!;
            if (existing >= atLeast) return copied;
            await using var connection = await database.OpenConnectionAsync(ct);
            await using var transaction = await connection.BeginTransactionAsync(ct);
            // Each copy goes to the stream its original is in (the partition's usage stream), after that stream's last version.
            await using var copy = new NpgsqlCommand($"""
                with source as (
                    select e.stream_id, e.data, e.bdata, e.type, e.mt_dotnet_type, row_number() over (partition by e.stream_id order by e.seq_id) as n
                    from (select * from {schema}.mt_events m cross join lateral (select {UsageBatchMeteredBytes.BodySql("m")} as body offset 0) b
                          where m.type = 'usage_batch_metered'
                          and (exists (select 1 from jsonb_array_elements(b.body->'usage') u where u->>'deploymentId' = any(@deployments))
                               or exists (select 1 from jsonb_array_elements_text(b.body->'deploymentId') d where d = any(@deployments)))
                          order by seq_id limit @take) e
                ),
                copied as (
                    insert into {schema}.mt_events (seq_id, id, stream_id, version, data, bdata, type, timestamp, tenant_id, mt_dotnet_type, is_archived)
                    select nextval('{schema}.mt_events_sequence'), gen_random_uuid(), s.stream_id, st.version + s.n, s.data, s.bdata, s.type, now(), '*DEFAULT*', s.mt_dotnet_type, false
                    from source s join {schema}.mt_streams st on st.id = s.stream_id
                    order by s.n, s.stream_id
                    returning stream_id, version
                ),
                bumped as (
                    update {schema}.mt_streams st set version = c.last from (select stream_id, max(version) as last from copied group by stream_id) c
                    where st.id = c.stream_id
                )
                select count(*) from copied
                """, connection, transaction);
            copy.Parameters.AddWithValue("deployments", deployments.ToArray());
            copy.Parameters.AddWithValue("take", Math.Min(atLeast - existing, 50_000));
            var inserted = (long)(await copy.ExecuteScalarAsync(ct))!;
            if (inserted == 0) return copied;
            await transaction.CommitAsync(ct);
            copied += inserted;
        }
    }
}
