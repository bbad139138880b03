using Marten;
using Npgsql;
using NpgsqlTypes;
using Weasel.Postgresql;
using Weasel.Postgresql.Tables;

namespace Throughput.Deployments;

/// <summary>
/// The metering side of a deployment: its leaky bucket and what has been metered into it. Usage events go to their
/// partition's stream, one append per consumer batch whatever the number of deployments in it, so the deployment's own
/// stream and snapshot no longer move with usage; this row does, written in bulk at the partition's checkpoint (with the
/// usage, or up to an interval after it while the partition is backlogged: see <c>PartitionDeployments</c>).
/// <see cref="Version"/> is the row's optimistic concurrency token between the partition's consumer and the throttle lifter.
/// </summary>
public sealed record DeploymentMeter(
    string DeploymentId,
    decimal BucketLevel,
    DateTimeOffset BucketAt,
    TokenCounts Usage,
    decimal WeightedTokens,
    long Version)
{
    /// <summary>The deployment as metering sees it: its stream's state with this bucket and these totals.</summary>
    public Deployment On(Deployment d) => d with
    {
        BucketLevel = BucketLevel,
        BucketAt = BucketAt,
        Usage = Usage,
        WeightedTokens = WeightedTokens,
    };

    /// <summary>The meter with one more usage event folded in: the one fold of usage into a bucket and its totals (<see cref="Deployment.Metered"/> is this on the deployment).</summary>
    public DeploymentMeter Then(UsageMetered e) => this with
    {
        Usage = Usage + e.Tokens,
        WeightedTokens = WeightedTokens + e.WeightedTokens,
        BucketLevel = e.BucketLevel,
        BucketAt = BucketAt > e.MeteredAt ? BucketAt : e.MeteredAt,
    };

    /// <summary>The row after metering moved the deployment (<paramref name="d"/> is <see cref="On"/> folded with the new events).</summary>
    public static DeploymentMeter Of(Deployment d, long version) => new(d.Id, d.BucketLevel, d.BucketAt, d.Usage, d.WeightedTokens, version);
}

public static class DeploymentMeters
{
    public const string Table = "deployment_meters";

    /// <summary>Per partition stream: the last usage event its meters' rows hold (see <c>PartitionDeployments</c>), with a version that guards it.</summary>
    public const string CheckpointTable = "meter_checkpoints";

    /// <summary>The stream a partition's usage events go to; ':' keeps it apart from every tenant id.</summary>
    public static string PartitionStream(string queue) => "meter:" + queue;

    public static bool IsPartitionStream(string streamId) => streamId.StartsWith("meter:", StringComparison.Ordinal);

    public static Table Definition(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, Table, SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("deployment_id").AsPrimaryKey();
        table.AddColumn<decimal>("bucket_level").NotNull();
        table.AddColumn<DateTimeOffset>("bucket_at").NotNull();
        table.AddColumn<long>("records").NotNull();
        table.AddColumn<long>("prompt_tokens").NotNull();
        table.AddColumn<long>("cached_tokens").NotNull();
        table.AddColumn<long>("output_tokens").NotNull();
        table.AddColumn<decimal>("weighted_tokens").NotNull();
        table.AddColumn<long>("spilled_records").NotNull();
        table.AddColumn<long>("spilled_tokens").NotNull();
        // Meters written before the spilled tokens were kept by type hold only their sum, in spilled_tokens.
        table.AddColumn<long>("spilled_prompt_tokens").NotNull().DefaultValueByExpression("0");
        table.AddColumn<long>("spilled_cached_tokens").NotNull().DefaultValueByExpression("0");
        table.AddColumn<long>("spilled_output_tokens").NotNull().DefaultValueByExpression("0");
        table.AddColumn<long>("version").NotNull();
        // Every consumer batch rewrites the row of each deployment it metered. Half-empty pages let PostgreSQL put the new
        // version beside the old one without touching the primary key's index (a HOT update): 2,270 rows of 10,000 updated in
        // one statement took 54 ms at the default fill factor and 30 ms at 50 (psql on the 2-core VM, 2026-12-04).
        table.WithFillFactor(50);
        return table;
    }

    public static Table CheckpointDefinition(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, CheckpointTable, SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("stream_id").AsPrimaryKey();
        table.AddColumn<Guid>("last_event");
        table.AddColumn<long>("version").NotNull();
        return table;
    }

    /// <summary>The meters of these deployments that have one (a deployment never metered since usage moved here has none).</summary>
    public static async Task<Dictionary<string, DeploymentMeter>> LoadAsync(IQuerySession session, IReadOnlyCollection<string> ids, CancellationToken ct) =>
        ids.Count == 0 ? [] : await LoadWhereAsync(session, "deployment_id = any(?)", ct, new object[] { ids.ToArray() });

    /// <summary>Every meter, for a host loading its admission table.</summary>
    public static Task<Dictionary<string, DeploymentMeter>> LoadAllAsync(IQuerySession session, CancellationToken ct) => LoadWhereAsync(session, "true", ct);

    static async Task<Dictionary<string, DeploymentMeter>> LoadWhereAsync(IQuerySession session, string where, CancellationToken ct, params object[] parameters)
    {
        var schema = session.DocumentStore.Options.Events.DatabaseSchemaName;
        var rows = await session.QueryAsync<DeploymentMeter>(
            $"""
            select json_build_object('deploymentId', deployment_id, 'bucketLevel', bucket_level, 'bucketAt', bucket_at, 'usage', json_build_object(
                    'records', records, 'promptTokens', prompt_tokens, 'cachedTokens', cached_tokens, 'outputTokens', output_tokens,
                    'spilledRecords', spilled_records, 'spilledPromptTokens', spilled_prompt_tokens, 'spilledCachedTokens', spilled_cached_tokens,
                    'spilledOutputTokens', spilled_output_tokens),
                'weightedTokens', weighted_tokens, 'version', version)
            from {schema}.{Table} where {where}
            """, ct, parameters);
        return rows.ToDictionary(m => m.DeploymentId, StringComparer.Ordinal);
    }

    /// <summary>Deployments as metering sees them: their snapshots with their meters on.</summary>
    public static async Task<IReadOnlyList<Deployment>> LoadDeploymentsAsync(IQuerySession session, IReadOnlyCollection<string> ids, CancellationToken ct)
    {
        if (ids.Count == 0) return [];
        var deployments = await session.LoadManyAsync<Deployment>(ct, ids);
        var meters = await LoadAsync(session, ids, ct);
        return [.. deployments.Select(d => meters.TryGetValue(d.Id, out var m) ? m.On(d) : d)];
    }

    public static async Task<Deployment?> LoadDeploymentAsync(IQuerySession session, string id, CancellationToken ct) =>
        (await LoadDeploymentsAsync(session, [id], ct)) is [var d] ? d : null;

    /// <summary>
    /// Writes the meters, each only over the version it was read at (0: none yet). The session must be inside its explicit
    /// transaction. Throws a concurrency exception when another writer moved one since: the caller decides again.
    /// </summary>
    public static Task SaveAsync(IDocumentSession session, IReadOnlyList<(DeploymentMeter Meter, long ReadAt)> meters, CancellationToken ct) =>
        SaveAsync(session.Connection!, session.DocumentStore.Options.Events.DatabaseSchemaName, meters, ct);

    /// <summary>The same on a connection inside its own transaction.</summary>
    public static async Task SaveAsync(NpgsqlConnection connection, string schema, IReadOnlyList<(DeploymentMeter Meter, long ReadAt)> meters, CancellationToken ct)
    {
        if (meters.Count == 0) return;
        await using var batch = new NpgsqlBatch(connection) { BatchCommands = { SaveCommand(schema, meters) } };
        CheckSaved((long)(await batch.ExecuteScalarAsync(ct))!, meters.Count);
    }

    /// <summary>The write of <see cref="SaveAsync(NpgsqlConnection, string, IReadOnlyList{ValueTuple{DeploymentMeter, long}}, CancellationToken)"/>, to run in a batch with others; its one row is the count for <see cref="CheckSaved"/>.</summary>
    public static NpgsqlBatchCommand SaveCommand(string schema, IReadOnlyList<(DeploymentMeter Meter, long ReadAt)> meters)
    {
        var command = new NpgsqlBatchCommand(
            $"""
            with u as (
                select * from unnest(@ids, @levels, @ats, @records, @prompt, @cached, @output, @weighted, @spilled_records, @spilled_prompt,
                    @spilled_cached, @spilled_output, @read_at)
                    as u(id, level, at, records, prompt, cached, output, weighted, spilled_records, spilled_prompt, spilled_cached, spilled_output, read_at)),
            changed as (
                update {schema}.{Table} m set bucket_level = u.level, bucket_at = u.at, records = u.records, prompt_tokens = u.prompt,
                    cached_tokens = u.cached, output_tokens = u.output, weighted_tokens = u.weighted, spilled_records = u.spilled_records,
                    spilled_tokens = u.spilled_prompt + u.spilled_output, spilled_prompt_tokens = u.spilled_prompt,
                    spilled_cached_tokens = u.spilled_cached, spilled_output_tokens = u.spilled_output, version = u.read_at + 1
                from u where m.deployment_id = u.id and m.version = u.read_at and u.read_at > 0
                returning 1),
            created as (
                insert into {schema}.{Table} (deployment_id, bucket_level, bucket_at, records, prompt_tokens, cached_tokens, output_tokens,
                    weighted_tokens, spilled_records, spilled_tokens, spilled_prompt_tokens, spilled_cached_tokens, spilled_output_tokens, version)
                select id, level, at, records, prompt, cached, output, weighted, spilled_records, spilled_prompt + spilled_output, spilled_prompt,
                    spilled_cached, spilled_output, 1 from u where u.read_at = 0
                on conflict do nothing
                returning 1)
            select (select count(*) from changed) + (select count(*) from created)
            """);
        Array("ids", NpgsqlDbType.Text, meters.Select(m => m.Meter.DeploymentId));
        Array("levels", NpgsqlDbType.Numeric, meters.Select(m => m.Meter.BucketLevel));
        Array("ats", NpgsqlDbType.TimestampTz, meters.Select(m => m.Meter.BucketAt));
        Array("records", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.Records));
        Array("prompt", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.PromptTokens));
        Array("cached", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.CachedTokens));
        Array("output", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.OutputTokens));
        Array("weighted", NpgsqlDbType.Numeric, meters.Select(m => m.Meter.WeightedTokens));
        Array("spilled_records", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.SpilledRecords));
        Array("spilled_prompt", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.SpilledPromptTokens));
        Array("spilled_cached", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.SpilledCachedTokens));
        Array("spilled_output", NpgsqlDbType.Bigint, meters.Select(m => m.Meter.Usage.SpilledOutputTokens));
        Array("read_at", NpgsqlDbType.Bigint, meters.Select(m => m.ReadAt));
        return command;

        void Array<T>(string name, NpgsqlDbType type, IEnumerable<T> values) =>
            command.Parameters.Add(new NpgsqlParameter(name, NpgsqlDbType.Array | type) { Value = values.ToArray() });
    }

    public static void CheckSaved(long written, int count)
    {
        if (written != count)
            throw new JasperFx.ConcurrencyException($"{count - written} of {count} deployment meters changed since they were read", typeof(DeploymentMeter), "");
    }
}
