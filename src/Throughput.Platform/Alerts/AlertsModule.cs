using Marten;
using Marten.Events.Projections;
using Throughput.Configuration;

namespace Throughput.Alerts;

public sealed class AlertsModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(AlertSet)] = "alert_set",
        [typeof(AlertRemoved)] = "alert_removed",
        [typeof(UsageAlertCrossed)] = "usage_alert_crossed",
        [typeof(SpendAlertCrossed)] = "spend_alert_crossed",
        [typeof(InvoiceAlertCrossed)] = "invoice_alert_crossed",
        [typeof(AlertRearmed)] = "alert_rearmed",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(Alert)];

    /// <summary>The invoice watch runs on every Daemon host; the usage watch is a read model member (below).</summary>
    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        services.AddSingleton(InvoiceWatchSettings.FromConfiguration(configuration));
        if (roles.Daemon) services.AddHostedService<InvoiceWatch>();
    }

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout) => opts.Schema.For<Alert>().Index(a => a.TenantId);

    /// <summary>
    /// The usage watch joins the live read models' pass, under the daemon's leader. Not a full rebuild's: alerts are decided
    /// once, as usage arrives, never again from history.
    /// </summary>
    public override void AddReadModels(CompositeProjection readModels, StoreOptions opts, ProjectionLayout layout)
    {
        if (layout != ProjectionLayout.Live) return;
        readModels.Add(new AlertWatch());
        foreach (var type in AlertWatch.EventTypes) readModels.IncludeType(type);
    }

    public override void MapEndpoints(WebApplication app) => app.MapAlerts();
}
