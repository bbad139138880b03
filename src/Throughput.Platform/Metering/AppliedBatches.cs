using Marten;
using Npgsql;
using NpgsqlTypes;
using Weasel.Postgresql;
using Weasel.Postgresql.Tables;

namespace Throughput.Metering;

/// <summary>
/// The dedupe ledger: which (producer, sequence, deployment) has been folded. Claimed in the same transaction that
/// appends the usage, so a claim exists exactly when the usage does. It does not rely on arrival order: batches of one
/// producer can reach the consumer out of order (concurrent dispatch, error-queue replays) and still count once.
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
        table.Indexes.Add(new IndexDefinition("ix_metering_applied_at") { Columns = ["applied_at"] });
        return table;
    }

    /// <summary>Claims the keys not claimed before; returns those. The session must be inside its explicit transaction.</summary>
    public static async Task<HashSet<(string Producer, long Sequence, string Deployment)>> ClaimAsync(
        IDocumentSession session, IReadOnlyCollection<(string Producer, long Sequence, string Deployment)> keys, DateTimeOffset now, CancellationToken ct)
    {
        var fresh = new HashSet<(string, long, string)>(keys.Count);
        if (keys.Count == 0) return fresh;
        var schema = session.DocumentStore.Options.Events.DatabaseSchemaName;
        await using var command = new NpgsqlCommand(
            $"""
            insert into {schema}.{Table} (producer_id, sequence, deployment_id, applied_at)
            select p, s, d, @now from unnest(@producers, @sequences, @deployments) as k(p, s, d)
            on conflict do nothing
            returning producer_id, sequence, deployment_id
            """, session.Connection);
        command.Parameters.Add(new NpgsqlParameter("producers", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = keys.Select(k => k.Producer).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("sequences", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { Value = keys.Select(k => k.Sequence).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("deployments", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = keys.Select(k => k.Deployment).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("now", NpgsqlDbType.TimestampTz) { Value = now });
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) fresh.Add((reader.GetString(0), reader.GetInt64(1), reader.GetString(2)));
        return fresh;
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
