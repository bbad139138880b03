using Marten;
using Throughput.Configuration;

namespace Throughput.Webhooks;

public sealed class WebhooksModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(WebhookEndpointRegistered)] = "webhook_endpoint_registered",
        [typeof(WebhookSecretRotated)] = "webhook_secret_rotated",
        [typeof(WebhookEndpointDisabled)] = "webhook_endpoint_disabled",
        [typeof(WebhookEndpointEnabled)] = "webhook_endpoint_enabled",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(WebhookEndpoint)];

    /// <summary>The feed runs under the daemon's leader; the sender on one Daemon host, and only where the operator allowed receivers' hosts.</summary>
    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        var settings = WebhookSettings.FromConfiguration(configuration);
        services.AddSingleton(settings);
        // Without a key nothing can be registered (no host is allowed); a random one keeps the type whole.
        services.AddSingleton(new SecretBox(settings.SecretKey ?? System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        services.ConfigureMarten(opts => opts.Events.Subscribe(new WebhookFeed()));
        if (roles.Daemon && settings.Sends) services.AddHostedService<WebhookSender>();
    }

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
        opts.Schema.For<WebhookEndpoint>().Index(e => e.TenantId);
        // The sender's poll reads the head of every pending (endpoint, order key): as columns, with indexes of the pending
        // deliveries only, it reads no document (a delivery holds its body) and nothing already delivered or failed.
        opts.Schema.For<WebhookDelivery>()
            .Duplicate(d => d.EndpointId)
            .Duplicate(d => d.Status, configure: Pending)
            .Duplicate(d => d.OrderKey, configure: Pending)
            .Duplicate(d => d.Sequence, configure: Pending)
            .Duplicate(d => d.NextAttemptAt, configure: Pending)
            .Index(d => new { d.EndpointId, d.OrderKey, d.Sequence }, heads =>
            {
                heads.Predicate = PendingOnly;
                heads.IncludeColumns = ["id", "next_attempt_at"]; // the poll's heads from the index alone
            })
            .Index(d => new { d.EndpointId, d.Sequence });

        static void Pending(Marten.Schema.DocumentIndex index) => index.Predicate = PendingOnly;
    }

    const string PendingOnly = "status = 'Pending'";

    public override void MapEndpoints(WebApplication app) => app.MapWebhooks(app.Services.GetRequiredService<WebhookSettings>());
}
