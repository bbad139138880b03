using Marten;
using Npgsql;
using NpgsqlTypes;
using Throughput.Capacity;
using Weasel.Postgresql;
using Weasel.Postgresql.Tables;

namespace Throughput.Metering;

/// <summary>
/// The dedupe ledger: which (producer, sequence, deployment) has been folded. Claimed in the same transaction that
/// appends the usage, so a claim exists exactly when the usage does. It does not rely on arrival order: batches of one
/// producer can reach the consumer out of order (concurrent dispatch, error-queue replays) and still count once. Each
/// claim keeps a hash of what it counted, so a replay of the same key with other content is told apart from a duplicate.
/// </summary>
public static class AppliedBatches
{
    public const string Table = "metering_applied";

    /// <summary>How long claims are kept; a duplicate older than this (e.g. a very late error-queue replay) would count again.</summary>
    public static readonly TimeSpan Retention = TimeSpan.FromDays(14);

    public static Table Definition(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, Table, SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("producer_id").AsPrimaryKey();
        table.AddColumn<long>("sequence").AsPrimaryKey();
        table.AddColumn<string>("deployment_id").AsPrimaryKey();
        table.AddColumn<DateTimeOffset>("applied_at").NotNull();
        table.AddColumn<long>("content_hash"); // null on claims from before hashes were kept: taken as the same content
        table.Indexes.Add(new IndexDefinition("ix_metering_applied_at") { Columns = ["applied_at"] });
        return table;
    }

    /// <summary>
    /// A key's claim: taken now, or taken before with the hash of what was counted then (null on claims from before hashes
    /// were kept). Each message holding the key is compared on its own: one batch may hold a verbatim repeat and a
    /// conflicting one of the same key.
    /// </summary>
    public readonly record struct Claim(bool Fresh, long? CountedHash)
    {
        public bool Conflicts(long contentHash) => !Fresh && CountedHash is { } counted && counted != contentHash;
    }

    /// <summary>Claims the keys not claimed before and tells each key's fate. The session must be inside its explicit transaction.</summary>
    public static async Task<Dictionary<(string Producer, long Sequence, string Deployment), Claim>> ClaimAsync(
        IDocumentSession session, IReadOnlyDictionary<(string Producer, long Sequence, string Deployment), long> keys, DateTimeOffset now, CancellationToken ct)
    {
        var claims = new Dictionary<(string, long, string), Claim>(keys.Count);
        if (keys.Count == 0) return claims;
        var schema = session.DocumentStore.Options.Events.DatabaseSchemaName;
        // The outer select reads the table as it was before the insert, so an existing claim's hash is the earlier one.
        await using var command = new NpgsqlCommand(
            $"""
            with k as (select * from unnest(@producers, @sequences, @deployments, @hashes) as k(p, s, d, h)),
            fresh as (
                insert into {schema}.{Table} (producer_id, sequence, deployment_id, applied_at, content_hash)
                select p, s, d, @now, h from k
                on conflict do nothing
                returning producer_id, sequence, deployment_id)
            select k.p, k.s, k.d, fresh.producer_id is not null, t.content_hash
            from k
            left join fresh on fresh.producer_id = k.p and fresh.sequence = k.s and fresh.deployment_id = k.d
            left join {schema}.{Table} t on t.producer_id = k.p and t.sequence = k.s and t.deployment_id = k.d
            """, session.Connection);
        command.Parameters.Add(new NpgsqlParameter("producers", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = keys.Keys.Select(k => k.Producer).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("sequences", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { Value = keys.Keys.Select(k => k.Sequence).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("deployments", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = keys.Keys.Select(k => k.Deployment).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("hashes", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { Value = keys.Values.ToArray() });
        command.Parameters.Add(new NpgsqlParameter("now", NpgsqlDbType.TimestampTz) { Value = now });
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
            claims[(reader.GetString(0), reader.GetInt64(1), reader.GetString(2))] = new Claim(reader.GetBoolean(3), reader.IsDBNull(4) ? null : reader.GetInt64(4));
        return claims;
    }

    /// <summary>
    /// A stable 64-bit FNV-1a hash of the records one message holds for one deployment, in their order: what a claim
    /// counted. Producers are authenticated, so it guards against their mistakes, not against crafted collisions.
    /// </summary>
    public static long ContentHash(IReadOnlyList<MeteredRecord> records)
    {
        var hash = 14695981039346656037UL;
        foreach (var r in records)
        {
            AddText(ref hash, r.RecordId);
            Add(ref hash, r.PromptTokens);
            Add(ref hash, r.CachedTokens);
            Add(ref hash, r.OutputTokens);
            Add(ref hash, r.Spilled ? 1 : 0);
            Add(ref hash, r.EstimatedTokens);
            Add(ref hash, r.StartedAt.UtcTicks);
            Add(ref hash, r.FinishedAt.UtcTicks);
            if (r.AdapterId is not null) AddText(ref hash, r.AdapterId); // records without one hash as they always did
            if (r.Phase != ServingPhase.Whole) Add(ref hash, 0x5048_0000 + (long)r.Phase); // likewise records of whole requests
        }
        return unchecked((long)hash);

        static void Add(ref ulong hash, long value)
        {
            for (var i = 0; i < 8; i++, value >>= 8) hash = (hash ^ (byte)value) * 1099511628211UL;
        }

        static void AddText(ref ulong hash, string? text)
        {
            foreach (var c in text ?? "") hash = ((hash ^ (byte)c) * 1099511628211UL ^ (byte)(c >> 8)) * 1099511628211UL;
            hash = (hash ^ 0xFF) * 1099511628211UL; // ends the string, so "ab"+"c" differs from "a"+"bc"
        }
    }

    public static async Task<int> PruneAsync(IDocumentStore store, DateTimeOffset now, CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        await using var command = new NpgsqlCommand(
            $"delete from {store.Options.Events.DatabaseSchemaName}.{Table} where applied_at < @before", session.Connection);
        command.Parameters.AddWithValue("before", now - Retention);
        return await command.ExecuteNonQueryAsync(ct);
    }
}

/// <summary>Deletes ledger claims past their retention, hourly; every host may run it, the delete is idempotent.</summary>
public sealed class LedgerPruning(IDocumentStore store, TimeProvider clock, ILogger<LedgerPruning> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromHours(1), clock);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                var pruned = await AppliedBatches.PruneAsync(store, clock.GetUtcNow(), stoppingToken);
                if (pruned > 0) log.LogInformation("Pruned {Count} metering ledger claims older than {Retention}", pruned, AppliedBatches.Retention);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "Pruning the metering ledger failed; retrying next hour");
            }
        }
    }
}
