using JasperFx;
using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Aggregation;
using Marten.Events.Projections;
using Throughput.Access;
using Throughput.Admission;
using Throughput.Capacity;
using Throughput.Configuration;
using Throughput.Deployments;
using Throughput.Invoicing;
using Throughput.Metering;
using Throughput.Reservations;
using Throughput.Tenants;
using Weasel.Core;

namespace Throughput.Hosting;

/// <summary>Where the write-side snapshots are folded: inline as events are appended (every host), or in the read models' single pass of a full rebuild.</summary>
public enum ProjectionLayout
{
    Live,
    SinglePassRebuild,
}

public static class EventStore
{
    const int AggregateCacheLimit = 10_000;

    public static IServiceCollection AddThroughputEventStore(this IServiceCollection services, ServiceSettings settings, HostRoles roles)
    {
        services.AddMarten(opts => Configure(opts, settings, ProjectionLayout.Live))
            .AddSubscriptionWithServices<AdmissionForwarder>(ServiceLifetime.Singleton)
            .UseLightweightSessions()
            .AddAsyncDaemon(DaemonMode.Disabled) // DaemonLeadership runs it, on one host at a time
            .ApplyAllDatabaseChangesOnStartup();
        services.ConfigureMarten((sp, opts) => opts.Listeners.Add(ActivatorUtilities.CreateInstance<PushAfterCommit>(sp)));
        if (roles.Daemon)
        {
            services.AddSingleton<DaemonLeadership>();
            services.AddHostedService(sp => sp.GetRequiredService<DaemonLeadership>());
        }
        return services;
    }

    /// <summary>The write side's aggregates, kept as snapshots: inline live, folded by the read models' pass in a rebuild.</summary>
    static readonly SnapshotOf[] Snapshots =
    [
        SnapshotOf.Type<Deployment>(), SnapshotOf.Type<Tenant>(), SnapshotOf.Type<CapacityPool>(), SnapshotOf.Type<Reservation>(), SnapshotOf.Type<Staff>(),
        SnapshotOf.Type<ServingNode>(), SnapshotOf.Type<InvoiceRegister>(), SnapshotOf.Type<Invoice>(), SnapshotOf.Type<GpuCalibration>(),
    ];

    sealed record SnapshotOf(Action<StoreOptions> Inline, Action<CompositeProjection> Rebuilt)
    {
        public static SnapshotOf Type<T>() where T : notnull =>
            new(opts => opts.Projections.Snapshot<T>(SnapshotLifecycle.Inline), readModels => readModels.Add(new RebuiltSnapshot<T>()));
    }

    public static void Configure(StoreOptions opts, ServiceSettings settings, ProjectionLayout layout)
    {
        opts.Connection(settings.PostgresConnectionString());
        opts.DatabaseSchemaName = settings.PgSchema;
        opts.UseSystemTextJsonForSerialization(EnumStorage.AsString, Casing.CamelCase);
        opts.AutoCreateSchemaObjects = AutoCreate.CreateOrUpdate;

        opts.Events.StreamIdentity = StreamIdentity.AsString;
        opts.Events.AppendMode = EventAppendMode.Quick;
        // A rolled-back append leaves a sequence gap; on a busy shared database the transaction-evidence check held one
        // for over 20 minutes and every async projection stalled. None of our appends stays open anywhere near this long.
        opts.Projections.SkipStaleGapsDespiteLiveTransactionsAfter = TimeSpan.FromSeconds(15);

        MapEventNames(opts.Events);
        opts.Storage.ExtendedSchemaObjects.Add(AppliedBatches.Definition(settings.PgSchema));
        opts.Storage.ExtendedSchemaObjects.Add(DeploymentMeters.Definition(settings.PgSchema));

        // A document rewritten on every usage event (a deployment) or page (a minute) has its queried fields in columns
        // of their own, indexed there, not in expression indexes on its JSON: an update that leaves those columns alone can
        // then be a HOT update, without a new entry in every index and the bloat that left a deployment's lookup slow.
        opts.Schema.For<UsageMinute>().Duplicate(m => m.DeploymentId);
        opts.Schema.For<QuarantinedMetering>().Index(q => q.QuarantinedAt).Index(q => q.ProducerId);
        opts.Schema.For<Deployment>().Duplicate(d => d.Throttled).Duplicate(d => d.TenantId);
        opts.Schema.For<Reservation>().Index(r => r.TenantId);
        opts.Schema.For<MonthClose>();
        opts.AddInvoicingSchema();
        if (layout == ProjectionLayout.Live)
        {
            // Write-side aggregates are inline snapshots: read in O(1), updated in the transaction that appends.
            foreach (var snapshot in Snapshots) snapshot.Inline(opts);
            opts.Projections.Add<ApiKeyProjection>(ProjectionLifecycle.Inline);
        }
        // Every async read model is a member of one composite projection: the daemon reads each page of the log once for
        // all of them and writes their changes in one batch, live and in a rebuild (one pass over the log, not one per model).
        opts.Projections.CompositeProjectionFor(ReadModels.Name, readModels =>
        {
            readModels.Version = ReadModels.Version;
            if (layout == ProjectionLayout.SinglePassRebuild)
            {
                // The same folds as the inline snapshots above, run by the rebuild's daemon in the read models' pass, so a full
                // rebuild reads and deserializes the log once instead of once for the snapshots and again for the read models.
                foreach (var snapshot in Snapshots) snapshot.Rebuilt(readModels);
                readModels.Add<ApiKeyProjection>();
            }
            readModels.Add<UsageSeriesProjection>();
            readModels.AddInvoicingReadModels();
            // The composite reads only the event types its members name, not the whole log.
            foreach (var type in readModels.AllProjections().OfType<EventFilterable>().SelectMany(p => p.IncludedEventTypes).Distinct().ToList())
                readModels.IncludeType(type);
            readModels.Options.BatchSize = settings.ProjectionPageSize;
            // A rebuild keeps documents in memory from page to page instead of reading them back for every page. Not live: a
            // host's daemon paused for a rebuild in the host would resume with documents cached from before it.
            if (layout == ProjectionLayout.SinglePassRebuild)
                foreach (var member in readModels.AllProjections().OfType<ProjectionBase>()) member.Options.CacheLimitPerTenant = AggregateCacheLimit;
        });
        if (layout == ProjectionLayout.SinglePassRebuild)
        {
            // Marten gives the composite's members its version, and a versioned projection's documents tables of their own
            // (mt_doc_deployment_2): the snapshots must be rebuilt into the tables the hosts read.
            var composite = opts.Projections.All.OfType<CompositeProjection>().Single(p => p.Name == ReadModels.Name);
            foreach (var snapshot in composite.AllProjections().OfType<ProjectionBase>().Where(IsSnapshot)) snapshot.OverwriteVersion(1);
        }
    }

    static bool IsSnapshot(ProjectionBase projection) =>
        projection.GetType() is { IsGenericType: true } type && type.GetGenericTypeDefinition() == typeof(RebuiltSnapshot<>);

    /// <summary>The daemon's leader lock: one per schema, so hosts of different schemas in one database (tests, benchmarks, a demo) do not contend for one.</summary>
    public static int DaemonLockId(string schema) =>
        BitConverter.ToInt32(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("throughput-daemon:" + schema)));

    /// <summary>Stored event names are part of the data: they never follow a class rename.</summary>
    public static readonly IReadOnlyDictionary<Type, string> EventNames = new Dictionary<Type, string>
    {
        [typeof(TenantCreated)] = "tenant_created",
        [typeof(ApiKeyIssued)] = "api_key_issued",
        [typeof(ApiKeyRevoked)] = "api_key_revoked",
        [typeof(TenantSuspended)] = "tenant_suspended",
        [typeof(TenantReinstated)] = "tenant_reinstated",
        [typeof(StaffKeyIssued)] = "staff_key_issued",
        [typeof(StaffKeyRevoked)] = "staff_key_revoked",
        [typeof(PoolOpened)] = "pool_opened",
        [typeof(CapacityAdded)] = "pool_capacity_added",
        [typeof(CapacityRemoved)] = "pool_capacity_removed",
        [typeof(PtusAllocated)] = "pool_ptus_allocated",
        [typeof(PtusFreed)] = "pool_ptus_freed",
        [typeof(PoolSizedFromGpus)] = "pool_sized_from_gpus",
        [typeof(PoolSizedInPtus)] = "pool_sized_in_ptus",
        [typeof(GpuCalibrated)] = "gpu_calibrated",
        [typeof(DeploymentCreated)] = "deployment_created",
        [typeof(DeploymentResized)] = "deployment_resized",
        [typeof(SpilloverEnabled)] = "deployment_spillover_enabled",
        [typeof(SpilloverDisabled)] = "deployment_spillover_disabled",
        [typeof(DeploymentReleased)] = "deployment_released",
        [typeof(UsageMetered)] = "usage_metered",
        [typeof(UsageBatchMetered)] = "usage_batch_metered",
        [typeof(DeploymentThrottled)] = "deployment_throttled",
        [typeof(ThrottleLifted)] = "deployment_throttle_lifted",
        [typeof(ServingNodeRegistered)] = "serving_node_registered",
        [typeof(ServingNodeCredentialsIssued)] = "serving_node_credentials_issued",
        [typeof(ServingNodeRevoked)] = "serving_node_revoked",
        [typeof(ReservationPurchased)] = "reservation_purchased",
        [typeof(ReservationCancelled)] = "reservation_cancelled",
        [typeof(InvoiceRegisterOpened)] = "invoice_register_opened",
        [typeof(InvoiceNumberAssigned)] = "invoice_number_assigned",
        [typeof(CreditNoteNumberAssigned)] = "credit_note_number_assigned",
        [typeof(InvoiceIssued)] = "invoice_issued",
        [typeof(CreditNoteIssued)] = "credit_note_issued",
    };

    static void MapEventNames(Marten.Events.IEventStoreOptions events)
    {
        foreach (var (type, name) in EventNames) events.MapEventType(type, name);
    }
}
