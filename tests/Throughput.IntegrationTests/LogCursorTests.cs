using Marten;
using Marten.Services;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Throughput.Deployments;
using Throughput.EventLog;

namespace Throughput.IntegrationTests;

/// <summary>The readers that follow the log (the admission table, the metering partitions) see every append once, including one that commits late.</summary>
[Collection(PlatformCollection.Name)]
public sealed class LogCursorTests(PlatformFixture platform)
{
    [Fact]
    public async Task A_cursor_waits_at_an_append_still_in_flight_reads_it_once_committed_and_gives_up_on_one_that_never_commits()
    {
        var store = platform.Services.GetRequiredService<IDocumentStore>();
        var schema = store.Options.Events.DatabaseSchemaName;
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var early = await PlatformFixture.BuyAsync(customer, region, 1);
        var late = await PlatformFixture.BuyAsync(customer, region, 1);
        string[] mine = [early, late];

        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync();
        var cursor = new LogCursor();
        cursor.Start(await LogCursor.LastSequenceAsync(connection, schema, CancellationToken.None), overlap: 0);
        async Task<(List<string> Streams, bool GaveUp)> Follow()
        {
            List<string> streams = [];
            var gaveUp = await cursor.FollowAsync(connection, schema, $"seq_id, case when {LogCursor.IsNew} then stream_id end", _ => { },
                reader => { if (!reader.IsDBNull(1) && mine.Contains(reader.GetString(1))) streams.Add(reader.GetString(1)); }, CancellationToken.None);
            return (streams, gaveUp);
        }

        // `early` takes its sequence first and commits after `late`.
        await using var inFlight = store.Storage.Database.CreateConnection();
        await inFlight.OpenAsync();
        var transaction = await inFlight.BeginTransactionAsync();
        await Append(store, early, transaction);
        await Append(store, late, null);

        Assert.Equal((late, false), await FollowMine());
        await transaction.CommitAsync();
        Assert.Equal((early, false), await FollowMine());
        Assert.Equal(("", false), await FollowMine());

        // An append that never commits is waited for, then passed, and the reader is told.
        transaction = await inFlight.BeginTransactionAsync();
        await Append(store, early, transaction);
        await Append(store, late, null);
        Assert.Equal((late, false), await FollowMine());
        await Task.Delay(TimeSpan.FromSeconds(5.5));
        Assert.Equal(("", true), await FollowMine());
        await transaction.RollbackAsync();
        Assert.Equal(("", false), await FollowMine());

        async Task<(string Streams, bool GaveUp)> FollowMine()
        {
            var (streams, gaveUp) = await Follow();
            return (string.Join(",", streams), gaveUp);
        }
    }

    static async Task Append(IDocumentStore store, string deploymentId, NpgsqlTransaction? transaction)
    {
        await using var session = transaction is null ? store.LightweightSession() : store.LightweightSession(SessionOptions.ForTransaction(transaction));
        session.Events.Append(deploymentId, new SpilloverEnabled(deploymentId, DateTimeOffset.UtcNow));
        await session.SaveChangesAsync();
    }
}
