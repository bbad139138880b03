using System.Diagnostics;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Npgsql;
using Throughput.Configuration;
using Throughput.Metering;

namespace Throughput.Store;

/// <summary>
/// <c>dotnet Throughput.Platform.dll rebuild-projections</c>: rebuilds every projection from the event log with Marten's
/// daemon, in one pass over the log: the write-side snapshots and the async read models as members of one composite
/// projection. Inside a running host (<see cref="RunInHostAsync"/>) the snapshots stay inline and are rebuilt first, one
/// pass each. Issued invoices live in their events, so they come back byte for byte; drafts come back to the cent.
/// </summary>
public static class ProjectionRebuild
{
    static readonly TimeSpan ShardTimeout = TimeSpan.FromMinutes(30);

    /// <summary>A rebuilt projection; a composite lists the members it rebuilt with it.</summary>
    public sealed record Rebuilt(string Projection, IReadOnlyList<string> Members, TimeSpan Took, TimeSpan Cpu);

    static IEnumerable<ProjectionBase> Registered(IDocumentStore store) =>
        ((DocumentStore)store).Options.Projections.All.OfType<ProjectionBase>()
            .OrderBy(p => p.Lifecycle == ProjectionLifecycle.Inline ? 0 : 1);

    static string Shard(string composite) => new ShardName(composite, ShardName.All, ReadModels.Version).Identity;

    static List<string> MembersOf(ProjectionBase projection) =>
        projection is CompositeProjection composite ? composite.AllProjections().OfType<ProjectionBase>().Select(p => p.Name).ToList() : [];

    /// <summary>Projection names in rebuild order: inline snapshots (other projections look deployments up in them) before async ones.</summary>
    public static IReadOnlyList<string> Names(IDocumentStore store) => Registered(store).Select(p => p.Name).ToList();

    /// <summary>
    /// Rebuilds with the given daemon: the host's running one (it pauses and resumes the shards) or a daemon of its own.
    /// A member of a composite is rebuilt by rebuilding its composite, with every other member.
    /// </summary>
    public static async Task<IReadOnlyList<Rebuilt>> RunAsync(IDocumentStore store, IProjectionDaemon daemon, IReadOnlyList<string> names, Action<string> report, CancellationToken ct)
    {
        var registered = Registered(store).ToList();
        var unknown = names.Where(n => !registered.Any(p => p.Name == n || MembersOf(p).Contains(n))).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"No projection named {string.Join(", ", unknown)}; known: {string.Join(", ", registered.SelectMany(p => MembersOf(p).Prepend(p.Name)))}");
        await UnfinishedRebuild.MarkAsync(store, names, ct);
        var results = new List<Rebuilt>();
        foreach (var projection in registered.Where(p => names.Count == 0 || names.Contains(p.Name) || MembersOf(p).Any(names.Contains)))
        {
            var started = Stopwatch.GetTimestamp();
            var cpu = Environment.CpuUsage.TotalTime;
            await daemon.RebuildProjectionAsync(projection.Name, ShardTimeout, ct);
            var rebuilt = new Rebuilt(projection.Name, MembersOf(projection), Stopwatch.GetElapsedTime(started), Environment.CpuUsage.TotalTime - cpu);
            results.Add(rebuilt);
            report($"rebuilt {rebuilt.Projection} in {rebuilt.Took.TotalSeconds:0.0} s, {rebuilt.Cpu.TotalSeconds:0.0} s CPU"
                + (rebuilt.Members.Count > 0 ? $" (one pass for {string.Join(", ", rebuilt.Members)})" : ""));
        }
        // A rebuild in one pass folded the usage series in the read models' composite: the live composite of them starts where
        // that one stopped, not where it stood before (the series' rows now hold everything up to there).
        if (!registered.Any(p => p.Name == ReadModels.SeriesName) && results.Any(r => r.Projection == ReadModels.Name))
        {
            await using var session = store.LightweightSession();
            session.QueueSqlCommand(
                $"""
                insert into {store.Options.Events.DatabaseSchemaName}.mt_event_progression (name, last_seq_id)
                select ?, last_seq_id from {store.Options.Events.DatabaseSchemaName}.mt_event_progression where name = ?
                on conflict (name) do update set last_seq_id = excluded.last_seq_id
                """,
                Shard(ReadModels.SeriesName), Shard(ReadModels.Name));
            await session.SaveChangesAsync(ct);
        }
        await UnfinishedRebuild.ClearAsync(store, ct);
        return results;
    }

    /// <summary>
    /// Rebuilds inside a running host: its writers are quiet (<see cref="QuietAsync"/>), a daemon of the rebuild's own does
    /// the work, and the host's daemon resumes from where the rebuild left every projection. Serving nodes must not publish
    /// meanwhile: the metering consumers keep running.
    /// </summary>
    public static async Task<IReadOnlyList<Rebuilt>> RunInHostAsync(IServiceProvider services, IReadOnlyList<string> names, Action<string> report, CancellationToken ct)
    {
        var store = services.GetRequiredService<IDocumentStore>();
        await using (await QuietAsync(services))
        {
            using var daemon = await store.BuildProjectionDaemonAsync();
            return await RunAsync(store, daemon, names, report, ct);
        }
    }

    /// <summary>
    /// Pauses a host's daemon, so no agent of it competes for the shards, and holds its throttle lifter off, until disposed.
    /// A rebuild writes a deployment's snapshot page by page; the lifter, reading one halfway (throttled, its lift still to
    /// come), would lift it again and write that half-built state back over the rebuilt one.
    /// </summary>
    public static async Task<IAsyncDisposable> QuietAsync(IServiceProvider services)
    {
        var daemon = services.GetService<DaemonLeadership>() is { } leadership ? await leadership.PauseAsync() : null; // none without the daemon role
        var lifter = services.GetService<ThrottleLifter>() is { } running ? await running.HoldAsync() : null; // none without the metering role
        return new Resume(daemon, lifter);
    }

    sealed class Resume(IAsyncDisposable? daemon, IDisposable? lifter) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            lifter?.Dispose();
            if (daemon is not null) await daemon.DisposeAsync();
        }
    }

    /// <summary>
    /// A rebuild by a store of its own in the <see cref="ProjectionLayout.SinglePassRebuild"/> layout: the write-side
    /// snapshots fold in the read models' pass, so every projection comes from one read of the log. Nothing else may project
    /// the schema meanwhile: the hosts are stopped (the command) or their daemon paused.
    /// </summary>
    public static async Task<IReadOnlyList<Rebuilt>> RunSinglePassAsync(ServiceSettings settings, IReadOnlyList<FeatureModule> modules, IReadOnlyList<string> names, Action<string> report, CancellationToken ct)
    {
        using var store = await SinglePassStoreAsync(settings, modules);
        using var daemon = await store.BuildProjectionDaemonAsync();
        return await RunAsync(store, daemon, names, report, ct);
    }

    /// <summary>
    /// The command-line mode: no host runs, so no consumer, issuer or daemon of its own competes. Refused (exit code 1) while
    /// a host of the schema leads its daemon; the daemon's lock is held meanwhile, so none starts leading during the rebuild.
    /// </summary>
    public static async Task<int> RunCommandAsync(ServiceSettings settings, IReadOnlyList<FeatureModule> modules, IReadOnlyList<string> names)
    {
        await using var daemonLock = new NpgsqlConnection(settings.PostgresConnectionString() + ";Pooling=false;Application Name=throughput-rebuild");
        await daemonLock.OpenAsync();
        if (!await DaemonLeadership.TryLockAsync(daemonLock, settings.PgSchema, CancellationToken.None))
        {
            await Console.Error.WriteLineAsync($"A host of schema {settings.PgSchema} leads its async daemon: stop every host of the schema, then rebuild.");
            return 1;
        }
        using var store = await SinglePassStoreAsync(settings, modules);
        using var daemon = await store.BuildProjectionDaemonAsync();
        var events = (await store.Advanced.FetchEventStoreStatistics()).EventCount;
        Console.WriteLine($"rebuilding {(names.Count == 0 ? string.Join(", ", Names(store)) : string.Join(", ", names))} from {events:N0} events");
        var started = Stopwatch.GetTimestamp();
        var cpu = Environment.CpuUsage.TotalTime;
        await RunAsync(store, daemon, names, Console.WriteLine, CancellationToken.None);
        var took = Stopwatch.GetElapsedTime(started);
        Console.WriteLine($"rebuilt in {took.TotalSeconds:0.0} s, {(Environment.CpuUsage.TotalTime - cpu).TotalSeconds:0.0} s CPU: {events / Math.Max(took.TotalSeconds, 0.001):N0} events/s over the log");
        return 0;
    }

    static async Task<DocumentStore> SinglePassStoreAsync(ServiceSettings settings, IReadOnlyList<FeatureModule> modules)
    {
        var options = new StoreOptions();
        EventStore.Configure(options, settings, ProjectionLayout.SinglePassRebuild, modules);
        var store = new PrefetchingRebuildStore(options);
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        return store;
    }
}
