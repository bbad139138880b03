using Marten;
using Npgsql;
using Throughput.Configuration;
using Throughput.Hosting;
using Throughput.Invoicing;
using Throughput.Store;

namespace Throughput.IntegrationTests;

/// <summary>
/// A rebuild stopped midway leaves the write-side snapshots half folded; no host may write from them until a rebuild
/// finishes, and no rebuild may start under a running host.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class RebuildGateTests(PlatformFixture platform)
{
    const string Schema = "throughput_rebuild_gate_tests";
    const int Numbers = 5_000;

    [Fact]
    public async Task A_rebuild_stopped_midway_keeps_every_host_from_starting_until_a_rebuild_finishes()
    {
        var (settings, store) = await platform.OwnSchemaAsync(Schema);
        using var owned = store;
        // A register that has numbered 5,000 invoices: the snapshot a host takes its next number from.
        var at = DateTimeOffset.UtcNow;
        await using (var session = store.LightweightSession())
        {
            session.Events.StartStream<InvoiceRegister>(InvoiceRegister.StreamId,
                [new InvoiceRegisterOpened(at), .. Enumerable.Range(1, Numbers).Select(n => new InvoiceNumberAssigned(n, $"invoice-{n}", "tenant", "2030-01", at))]);
            await session.SaveChangesAsync();
        }
        Assert.Equal(Numbers, (await LastInvoiceNumberAsync(store))!.Value);
        var environment = new Dictionary<string, string> { ["THROUGHPUT_PG_SCHEMA"] = Schema, ["Logging__LogLevel__Default"] = "Warning" };

        // Under a host that leads the schema's daemon, the command refuses to start.
        await using (var running = Host(environment))
        {
            await running.StartAsync();
            await Eventually.Until(() => DaemonLockHeldAsync(settings), held => held, TimeSpan.FromSeconds(30));
            var (exitCode, output) = await PlatformProcess.RunCommandAsync(environment, "rebuild-projections");
            Assert.True(exitCode == 1, output);
            Assert.Contains("leads its async daemon", output);
            Assert.Equal(Numbers, (await LastInvoiceNumberAsync(store))!.Value);
        }

        // A rebuild stopped once the register is half folded (small pages, so there is a midway to stop at).
        using var stop = new CancellationTokenSource();
        var rebuild = ProjectionRebuild.RunSinglePassAsync(settings with { ProjectionPageSize = 7 }, Features.All, [], _ => { }, stop.Token);
        var halfFolded = await Eventually.Until(() => LastInvoiceNumberAsync(store), n => n is null or < Numbers, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(2));
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => rebuild);
        Assert.True(halfFolded is null or < Numbers);

        await using (var refused = Host(environment))
        {
            var failed = await Assert.ThrowsAsync<InvalidOperationException>(refused.StartAsync);
            Assert.Contains("exited", failed.Message);
            Assert.Contains($"A projection rebuild of schema {Schema}", refused.Output);
            Assert.Contains("did not finish", refused.Output);
        }

        var finished = await PlatformProcess.RunCommandAsync(environment, "rebuild-projections");
        Assert.True(finished.ExitCode == 0, finished.Output);
        Assert.Equal(Numbers, (await LastInvoiceNumberAsync(store))!.Value);
        await using (var again = Host(environment))
            await again.StartAsync();
    }

    static PlatformProcess Host(Dictionary<string, string> environment) =>
        new($"tests.rebuild.{Guid.NewGuid():N}"[..25], partitions: 1, roles: "Api,Daemon", environment: environment);

    static async Task<long?> LastInvoiceNumberAsync(DocumentStore store)
    {
        await using var session = store.QuerySession();
        return (await session.LoadAsync<InvoiceRegister>(InvoiceRegister.StreamId))?.LastInvoiceNumber;
    }

    /// <summary>Whether some host holds the schema's daemon lock: this connection cannot take it.</summary>
    static async Task<bool> DaemonLockHeldAsync(ServiceSettings settings)
    {
        await using var connection = new NpgsqlConnection(settings.PostgresConnectionString() + ";Pooling=false");
        await connection.OpenAsync();
        return !await DaemonLeadership.TryLockAsync(connection, Schema, CancellationToken.None); // taken here, it is released when this unpooled connection closes
    }
}
