using Marten;
using Microsoft.Extensions.DependencyInjection;
using Throughput.Alerts;
using Throughput.Catalog;
using Throughput.Configuration;
using Throughput.Deployments;
using Throughput.Store;

namespace Throughput.IntegrationTests;

/// <summary>The async daemon's leader lock, seen from PostgreSQL: held, and holding no snapshot that would stop vacuum.</summary>
[Collection(PlatformCollection.Name)]
public sealed class DaemonLeadershipTests(PlatformFixture platform)
{
    [Fact]
    public async Task The_daemon_leader_holds_its_lock_on_an_idle_connection_that_keeps_no_snapshot()
    {
        Assert.True(await Eventually.Until(() => Task.FromResult(platform.Services.GetRequiredService<DaemonLeadership>().Leading), leading => leading));
        var store = platform.Services.GetRequiredService<IDocumentStore>();
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync();

        for (var look = 0; look < 5; look++)
        {
            await using var command = new Npgsql.NpgsqlCommand(
                """
                select a.state, a.backend_xmin is null
                from pg_stat_activity a join pg_locks l on l.pid = a.pid and l.locktype = 'advisory' and l.granted
                where a.application_name = 'throughput-daemon-leader' and a.datname = current_database()
                  and l.objid = (@lock::bigint & 4294967295)::oid
                """, connection);
            command.Parameters.AddWithValue("lock", EventStore.DaemonLockId(store.Options.Events.DatabaseSchemaName));
            await using var reader = await command.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync(), "no session of the daemon's leader holds its advisory lock");
            Assert.Equal(("idle", true), (reader.GetString(0), reader.GetBoolean(1)));
            Assert.False(await reader.ReadAsync());
            await Task.Delay(TimeSpan.FromMilliseconds(600));
        }

        // No session of the platform's keeps a snapshot open for long: vacuum can remove what every update leaves behind.
        await using var pinned = new Npgsql.NpgsqlCommand(
            """
            select count(*) from pg_stat_activity
            where datname = current_database() and backend_xmin is not null and pid <> pg_backend_pid()
              and state like 'idle in transaction%' and now() - state_change > interval '5 seconds'
            """, connection);
        Assert.Equal(0L, (long)(await pinned.ExecuteScalarAsync())!);
    }

    static readonly string Composite = $"{ReadModels.Name}:V{ReadModels.Version}:All";
    static readonly string Series = $"{ReadModels.SeriesName}:V{ReadModels.Version}:All";
    static readonly string Watch = $"{nameof(AlertWatch)}:V{ReadModels.Version}:All";
    static readonly string[] SeriesMembers = [$"{nameof(Throughput.Metering.UsageMinuteProjection)}:V{ReadModels.Version}:All", $"{nameof(Throughput.Finance.PoolUtilizationProjection)}:V{ReadModels.Version}:All"];

    [Fact]
    public async Task A_read_model_that_joined_the_composite_later_gets_the_composites_position_and_moves_with_it()
    {
        const string schema = "throughput_joined_member_tests";
        var (_, store) = await platform.OwnSchemaAsync(schema);
        using var owned = store;
        await AppendAsync(store, "dep-joined-1");
        await ProjectAsync(store, schema);
        var members = await ProgressAsync(store, schema);
        Assert.Contains(Watch, members.Keys);
        var position = members[Composite];
        Assert.All(members.Values, p => Assert.Equal(position, p));

        // The store as it was before the usage watch joined the read models.
        await using (var connection = store.Storage.Database.CreateConnection())
        {
            await connection.OpenAsync();
            await using (var forget = new Npgsql.NpgsqlCommand($"delete from {schema}.mt_event_progression where name = '{Watch}'", connection))
                await forget.ExecuteNonQueryAsync();
            await DaemonLeadership.PositionNewShardsAsync(connection, store, CancellationToken.None);
        }
        Assert.Equal(position, (await ProgressAsync(store, schema))[Watch]);

        // Marten moves the row from there with the composite's next page.
        await AppendAsync(store, "dep-joined-2");
        await ProjectAsync(store, schema);
        members = await ProgressAsync(store, schema);
        Assert.True(members[Composite] > position);
        Assert.Equal(members[Composite], members[Watch]);
    }

    [Fact]
    public async Task The_usage_series_composite_without_a_position_takes_the_least_of_its_members()
    {
        const string schema = "throughput_series_position_tests";
        var (_, store) = await platform.OwnSchemaAsync(schema);
        using var owned = store;
        await AppendAsync(store, "dep-series-1");
        await ProjectAsync(store, schema);
        var members = await ProgressAsync(store, schema);
        Assert.All(SeriesMembers.Append(Series), name => Assert.Equal(members[Composite], members[name]));

        // As a store upgraded from one whose series were members of the read models' composite finds it: the series'
        // members at their positions (one behind the other), the composite of them without one.
        await AppendAsync(store, "dep-series-2");
        await ProjectAsync(store, schema);
        await using (var connection = store.Storage.Database.CreateConnection())
        {
            await connection.OpenAsync();
            await using (var forget = new Npgsql.NpgsqlCommand(
                $"delete from {schema}.mt_event_progression where name = '{Series}'; update {schema}.mt_event_progression set last_seq_id = @least where name = '{SeriesMembers[1]}'", connection))
            {
                forget.Parameters.AddWithValue("least", members[Composite]);
                await forget.ExecuteNonQueryAsync();
            }
            await DaemonLeadership.PositionNewShardsAsync(connection, store, CancellationToken.None);
        }
        Assert.Equal(members[Composite], (await ProgressAsync(store, schema))[Series]);
    }

    static async Task AppendAsync(DocumentStore store, string deploymentId)
    {
        await using var session = store.LightweightSession();
        session.Events.StartStream<Deployment>(deploymentId, new DeploymentCreated(deploymentId, "ten-joined", "chat", "gpt-4o", "eastus", DeploymentType.Global, 1, 2_500, 4, 1, 60, true,
            "USD", new PriceList(2m, 0, 0, 2.5m, 1.25m, 10m), DateTimeOffset.UtcNow));
        await session.SaveChangesAsync();
    }

    /// <summary>Runs a daemon of the store until both composites have the log's last event.</summary>
    static async Task ProjectAsync(DocumentStore store, string schema)
    {
        using var daemon = await store.BuildProjectionDaemonAsync();
        await daemon.StartAllAsync();
        var last = (await store.Advanced.FetchEventStoreStatistics()).EventSequenceNumber;
        await Eventually.Until(async () => await ProgressAsync(store, schema), p => p.GetValueOrDefault(Composite) >= last && p.GetValueOrDefault(Series) >= last);
        await daemon.StopAllAsync();
    }

    /// <summary>The progress rows of the read models' composite and of its members.</summary>
    static async Task<Dictionary<string, long>> ProgressAsync(DocumentStore store, string schema)
    {
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand($"select name, last_seq_id from {schema}.mt_event_progression where name like '%:V{ReadModels.Version}:All'", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var progress = new Dictionary<string, long>();
        while (await reader.ReadAsync()) progress[reader.GetString(0)] = reader.GetInt64(1);
        return progress;
    }
}
