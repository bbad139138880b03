using Marten;
using Throughput.Configuration;

namespace Throughput.Admission;

public sealed class AdmissionModule : FeatureModule
{
    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        services.AddSingleton<AdmissionPush>();
        services.AddSingleton<AdmissionTable>();
        services.AddSingleton<AdmissionLeases>();
        services.AddSingleton<LeaseOwner>();
        if (roles.Api)
        {
            services.AddHostedService(sp => sp.GetRequiredService<AdmissionTable>());
            services.AddHostedService(sp => sp.GetRequiredService<LeaseOwner>());
        }
        // Both push limit changes: the listener right after each commit, the subscription (run by the daemon's leader) surely.
        services.ConfigureMarten((sp, opts) =>
        {
            opts.Listeners.Add(ActivatorUtilities.CreateInstance<PushAfterCommit>(sp));
            opts.Events.Subscribe(new AdmissionForwarder(sp.GetRequiredService<AdmissionPush>()));
        });
    }

    public override void MapEndpoints(WebApplication app)
    {
        app.MapAdmission();
        app.MapAdmissionLeases();
    }
}
