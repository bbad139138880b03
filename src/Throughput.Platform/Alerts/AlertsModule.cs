using Marten;
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

    /// <summary>The usage watch runs under the daemon's leader, as every subscription does; the invoice watch on every Daemon host.</summary>
    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        services.ConfigureMarten(opts => opts.Events.Subscribe(new AlertWatch()));
        services.AddSingleton(InvoiceWatchSettings.FromConfiguration(configuration));
        if (roles.Daemon) services.AddHostedService<InvoiceWatch>();
    }

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout) => opts.Schema.For<Alert>().Index(a => a.TenantId);

    public override void MapEndpoints(WebApplication app) => app.MapAlerts();
}
