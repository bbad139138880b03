using System.Reflection;
using JasperFx;
using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Aggregation;
using Marten.Events.Projections;
using Throughput.Configuration;
using Weasel.Core;

namespace Throughput.Store;

public static class EventStore
{
    const int AggregateCacheLimit = 10_000;

    public static IServiceCollection AddThroughputEventStore(this IServiceCollection services, ServiceSettings settings, HostRoles roles, IReadOnlyList<FeatureModule> modules)
    {
        services.AddMarten(opts => Configure(opts, settings, ProjectionLayout.Live, modules))
            .UseLightweightSessions()
            .AddAsyncDaemon(DaemonMode.Disabled) // DaemonLeadership runs it, on one host at a time
            .ApplyAllDatabaseChangesOnStartup();
        services.AddHostedService<RebuildGate>(); // after the schema is applied, before any feature's writer starts
        if (roles.Daemon)
        {
            services.AddSingleton<DaemonLeadership>();
            services.AddHostedService(sp => sp.GetRequiredService<DaemonLeadership>());
        }
        return services;
    }

    static readonly MethodInfo InlineSnapshotOf = typeof(EventStore).GetMethod(nameof(AddInlineSnapshot), BindingFlags.NonPublic | BindingFlags.Static)!;
    static readonly MethodInfo RebuiltSnapshotOf = typeof(EventStore).GetMethod(nameof(AddRebuiltSnapshot), BindingFlags.NonPublic | BindingFlags.Static)!;

    static void AddInlineSnapshot<T>(StoreOptions opts) where T : notnull => opts.Projections.Snapshot<T>(SnapshotLifecycle.Inline);

    static void AddRebuiltSnapshot<T>(CompositeProjection readModels) where T : notnull => readModels.Add(new RebuiltSnapshot<T>());

    public static void Configure(StoreOptions opts, ServiceSettings settings, ProjectionLayout layout, IReadOnlyList<FeatureModule> modules)
    {
        opts.Connection(settings.PostgresConnectionString());
        opts.DatabaseSchemaName = settings.PgSchema;
        opts.UseSystemTextJsonForSerialization(EnumStorage.AsString, Casing.CamelCase);
        opts.AutoCreateSchemaObjects = AutoCreate.CreateOrUpdate;

        opts.Schema.For<UnfinishedRebuild>();

        opts.Events.StreamIdentity = StreamIdentity.AsString;
        opts.Events.AppendMode = EventAppendMode.Quick;
        // A span per session's use of a connection when something listens (Telemetry:OtlpEndpoint or :Traces); nothing otherwise.
        opts.OpenTelemetry.TrackConnections = JasperFx.OpenTelemetry.TrackLevel.Normal;
        // A rolled-back append leaves a sequence gap; on a busy shared database the transaction-evidence check held one
        // for over 20 minutes and every async projection stalled. None of our appends stays open anywhere near this long.
        opts.Projections.SkipStaleGapsDespiteLiveTransactionsAfter = TimeSpan.FromSeconds(15);
        // The drafts' lag behind metering halved with the high-water agent's slow poll at a quarter of its 1 s default, and
        // did not move with a faster fast poll: under a steady trickle of usage the agent evidently waits the slow one.
        opts.Projections.SlowPollingTime = TimeSpan.FromMilliseconds(250);

        foreach (var module in modules)
        {
            foreach (var (type, name) in module.Events) opts.Events.MapEventType(type, name);
            module.ConfigureStore(opts, layout);
            // Write-side aggregates are inline snapshots: read in O(1), updated in the transaction that appends.
            if (layout == ProjectionLayout.Live)
                foreach (var snapshot in module.Snapshots) InlineSnapshotOf.MakeGenericMethod(snapshot).Invoke(null, [opts]);
        }
        // The async read models are members of composite projections: the daemon reads each page of the log once for all the
        // members of one and writes their changes in one batch. Live, the usage series (minutes, hours, pool utilization) are
        // a composite of their own: at thousands of deployments they were over half of every page's writes, and the drafts'
        // page waited on them. The rebuild command folds them in the read models' pass: one pass over the log, not two.
        if (layout == ProjectionLayout.Live)
            opts.Projections.CompositeProjectionFor(ReadModels.SeriesName, composite =>
            {
                composite.Version = ReadModels.Version;
                foreach (var module in modules) module.AddUsageSeries(composite, opts);
                if (settings.UsageSeriesPace > TimeSpan.Zero) composite.Add(new SeriesPace(settings.UsageSeriesPace, settings.ProjectionPageSize));
                Tune(composite, settings, layout);
            });
        opts.Projections.CompositeProjectionFor(ReadModels.Name, readModels =>
        {
            readModels.Version = ReadModels.Version;
            foreach (var module in modules)
            {
                // The same folds as the inline snapshots above, run by the rebuild's daemon in the read models' pass, so a full
                // rebuild reads and deserializes the log once instead of once for the snapshots and again for the read models.
                if (layout == ProjectionLayout.SinglePassRebuild)
                    foreach (var snapshot in module.Snapshots) RebuiltSnapshotOf.MakeGenericMethod(snapshot).Invoke(null, [readModels]);
                module.AddReadModels(readModels, opts, layout);
                if (layout == ProjectionLayout.SinglePassRebuild) module.AddUsageSeries(readModels, opts);
            }
            Tune(readModels, settings, layout);
        });
        if (layout == ProjectionLayout.SinglePassRebuild)
        {
            // Marten gives the composite's members its version, and a versioned projection's documents tables of their own
            // (mt_doc_deployment_2): the snapshots must be rebuilt into the tables the hosts read.
            var composite = opts.Projections.All.OfType<CompositeProjection>().Single(p => p.Name == ReadModels.Name);
            foreach (var snapshot in composite.AllProjections().OfType<ProjectionBase>().Where(IsSnapshot)) snapshot.OverwriteVersion(1);
        }
    }

    static void Tune(CompositeProjection composite, ServiceSettings settings, ProjectionLayout layout)
    {
        // A composite reads only the event types its members name, not the whole log.
        foreach (var type in composite.AllProjections().OfType<EventFilterable>().SelectMany(p => p.IncludedEventTypes).Distinct().ToList())
            composite.IncludeType(type);
        composite.Options.BatchSize = settings.ProjectionPageSize;
        // Live, one page in flight at a time: whatever arrived while a page was folding is folded next as one page. With
        // more in flight the daemon queues a small range per high-water tick and folds them one after another, each
        // writing every deployment it touches, and at 10,000 deployments fell behind for good (docs/metering.md).
        if (layout == ProjectionLayout.Live) composite.Options.MaximumHopperSize = 1;
        // A rebuild keeps documents in memory from page to page instead of reading them back for every page. Not live: a
        // host's daemon paused for a rebuild in the host would resume with documents cached from before it.
        if (layout == ProjectionLayout.SinglePassRebuild)
            foreach (var member in composite.AllProjections().OfType<ProjectionBase>()) member.Options.CacheLimitPerTenant = AggregateCacheLimit;
    }

    static bool IsSnapshot(ProjectionBase projection) =>
        projection.GetType() is { IsGenericType: true } type && type.GetGenericTypeDefinition() == typeof(RebuiltSnapshot<>);

    /// <summary>The daemon's leader lock: one per schema, so hosts of different schemas in one database (tests, benchmarks, a demo) do not contend for one.</summary>
    public static int DaemonLockId(string schema) =>
        BitConverter.ToInt32(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("throughput-daemon:" + schema)));
}
