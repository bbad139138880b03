using Marten;
using Microsoft.Extensions.DependencyInjection;
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
}
