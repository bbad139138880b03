using JasperFx;
using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Throughput.Deployments;
using Weasel.Core;

namespace Throughput.Hosting;

public static class EventStore
{
    public const string Schema = "throughput";

    public static IServiceCollection AddThroughputEventStore(this IServiceCollection services, ServiceSettings settings)
    {
        services.AddMarten(opts =>
            {
                opts.Connection(settings.PostgresConnectionString());
                opts.DatabaseSchemaName = Schema;
                opts.UseSystemTextJsonForSerialization(EnumStorage.AsString, Casing.CamelCase);
                opts.AutoCreateSchemaObjects = AutoCreate.CreateOrUpdate;

                opts.Events.StreamIdentity = StreamIdentity.AsString;
                opts.Events.AppendMode = EventAppendMode.Quick;
                // DistributedLock.Postgres 1.3.1 (standing in for the missing patched 1.3.3) fails HotCold leadership
                // on Npgsql multiplexing data sources; a transaction-scoped advisory lock avoids that code path.
                opts.Events.UseAdvisoryLockTransaction = true;

                // Stored event names are part of the data: they never follow a class rename.
                opts.Events.MapEventType<UsageMetered>("usage_metered");

                opts.Projections.Snapshot<Deployment>(SnapshotLifecycle.Inline);
            })
            .UseLightweightSessions()
            .AddAsyncDaemon(DaemonMode.HotCold)
            .ApplyAllDatabaseChangesOnStartup();
        return services;
    }
}
