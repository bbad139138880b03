using System.Text.Json;
using System.Text.Json.Serialization;
using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Marten.Subscriptions;
using Throughput.Alerts;
using Throughput.Deployments;
using Throughput.Invoicing;

namespace Throughput.Webhooks;

/// <summary>The events an endpoint can subscribe to, under the names receivers see; the payload's <c>data</c> is the event as stored.</summary>
public static class WebhookEventTypes
{
    public static readonly IReadOnlyDictionary<Type, string> Names = new Dictionary<Type, string>
    {
        [typeof(DeploymentCreated)] = "deployment.purchased",
        [typeof(DeploymentResized)] = "deployment.resized",
        [typeof(DeploymentReleased)] = "deployment.released",
        [typeof(DeploymentThrottled)] = "deployment.throttled",
        [typeof(ThrottleLifted)] = "deployment.throttle_lifted",
        [typeof(DeploymentPlaced)] = "deployment.placed",
        [typeof(UsageAlertCrossed)] = "usage.alert_crossed",
        [typeof(SpendAlertCrossed)] = "spend.alert_crossed",
        [typeof(InvoiceAlertCrossed)] = "invoice.alert_crossed",
        [typeof(InvoiceIssued)] = "invoice.issued",
        [typeof(CreditNoteIssued)] = "credit_note.issued",
    };

    /// <summary>Also sent for a placement that leaves PTUs unplaced, so that a receiver can subscribe to degradation alone.</summary>
    public const string Degraded = "deployment.degraded";

    public static readonly IReadOnlySet<string> All = Names.Values.Append(Degraded).ToHashSet();

    /// <summary>The types an event is sent as, each a message of its own: its name, and <see cref="Degraded"/> beside <c>deployment.placed</c> when PTUs are left unplaced.</summary>
    public static IEnumerable<string> TypesOf(object data)
    {
        yield return Names[data.GetType()];
        if (data is DeploymentPlaced { UnplacedPtu: > 0 }) yield return Degraded;
    }

    /// <summary>What a message's id and its deliveries' ids are derived from: the event's id, with the type beside it for a second type of the same event.</summary>
    public static string MessageKey(IEvent e, string type) => type == Names[e.EventType] ? e.Id.ToString("N") : $"{e.Id:N}_{type}";

    /// <summary>Whose event it is, and the key its deliveries keep order by: a deployment's own, or the tenant's for billing documents.</summary>
    public static (string? TenantId, string OrderKey) OwnerOf(object data, IReadOnlyDictionary<string, string> deploymentTenants) => data switch
    {
        DeploymentCreated c => (c.TenantId, c.DeploymentId),
        DeploymentEvent d => (deploymentTenants.GetValueOrDefault(d.DeploymentId), d.DeploymentId),
        InvoiceIssued i => (i.TenantId, i.TenantId),
        UsageAlertCrossed a => (a.TenantId, a.DeploymentId ?? a.TenantId),
        SpendAlertCrossed a => (a.TenantId, a.DeploymentId ?? a.TenantId),
        InvoiceAlertCrossed a => (a.TenantId, a.DeploymentId ?? a.TenantId),
        CreditNoteIssued c => (c.TenantId, c.TenantId),
        _ => throw new ArgumentOutOfRangeException(nameof(data), data.GetType().Name, "not an event webhooks carry"),
    };

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    /// <summary>
    /// The body every attempt sends: <c>{"type", "timestamp", "tenantId", "data"}</c>, the Standard Webhooks payload's shape
    /// with the tenant beside it (an operator's endpoint hears every tenant, and most events name only their deployment).
    /// </summary>
    public static string Body(string type, string tenantId, IEvent e) => JsonSerializer.Serialize(new { type, timestamp = e.Timestamp, tenantId, data = e.Data }, Json);
}

/// <summary>
/// Turns the log into deliveries: a Marten subscription (async daemon, leader only) that writes one
/// <see cref="WebhookDelivery"/> per event and listening endpoint, committed with its own progress. A crash re-reads the
/// page and writes nothing twice, and a delivery already written is never written again; a receiver that is down only
/// makes deliveries wait (<see cref="WebhookSender"/>).
/// </summary>
public sealed class WebhookFeed : SubscriptionBase
{
    public WebhookFeed()
    {
        Name = "webhook-feed";
        foreach (var type in WebhookEventTypes.Names.Keys) IncludeType(type);
        Options.BatchSize = 500;
    }

    public override async Task<IChangeListener> ProcessEventsAsync(EventRange page, ISubscriptionController controller, IDocumentOperations operations, CancellationToken cancellationToken)
    {
        var endpoints = await operations.Query<WebhookEndpoint>().ToListAsync(cancellationToken);
        if (endpoints.Count == 0) return NullChangeListener.Instance;
        var deploymentIds = page.Events.Select(e => e.Data).OfType<DeploymentEvent>().Where(d => d is not DeploymentCreated).Select(d => d.DeploymentId).Distinct().ToArray();
        var deploymentTenants = deploymentIds.Length == 0 ? new Dictionary<string, string>()
            : (await operations.LoadManyAsync<Deployment>(cancellationToken, deploymentIds)).ToDictionary(d => d.Id, d => d.TenantId);
        List<WebhookDelivery> deliveries = [];
        foreach (var e in page.Events)
        {
            if (WebhookEventTypes.OwnerOf(e.Data, deploymentTenants) is not ({ } tenantId, var orderKey)) continue;
            foreach (var type in WebhookEventTypes.TypesOf(e.Data))
            {
                var key = WebhookEventTypes.MessageKey(e, type);
                string? body = null;
                foreach (var endpoint in endpoints.Where(x => x.Hears(type, tenantId) && x.RegisteredAt <= e.Timestamp))
                {
                    body ??= WebhookEventTypes.Body(type, tenantId, e);
                    deliveries.Add(new WebhookDelivery(WebhookDelivery.IdOf(key, endpoint.Id), endpoint.Id, "msg_" + key, type, orderKey,
                        e.Sequence, body, e.Timestamp, DeliveryStatus.Pending, e.Timestamp, []));
                }
            }
        }
        if (deliveries.Count == 0) return NullChangeListener.Instance;
        // A page read again (a daemon leader replaced mid-page) must not store a delivery over the one the sender has since
        // attempted or delivered: that would send it again.
        var written = (await operations.LoadManyAsync<WebhookDelivery>(cancellationToken, deliveries.Select(d => d.Id))).Select(d => d.Id).ToHashSet();
        foreach (var delivery in deliveries)
            if (!written.Contains(delivery.Id)) operations.Store(delivery);
        return NullChangeListener.Instance;
    }
}
