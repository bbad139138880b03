using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Marten.Subscriptions;
using Throughput.Deployments;
using Throughput.Tenants;

namespace Throughput.Admission;

/// <summary>
/// The reliable path for admission pushes: a Marten subscription (async daemon, leader only) that forwards every
/// admission-relevant event's deployment. Its progress only moves after the broker confirmed, so a crash between
/// the event and the publish re-sends instead of losing the change. The fast path (publish right after commit)
/// usually got there first; the repeat carries the same version and is ignored.
/// </summary>
public sealed class AdmissionForwarder : SubscriptionBase
{
    readonly AdmissionPush _push;

    public AdmissionForwarder(AdmissionPush push)
    {
        _push = push;
        Name = "admission-forwarder";
        IncludeType<DeploymentCreated>();
        IncludeType<DeploymentResized>();
        IncludeType<SpilloverEnabled>();
        IncludeType<SpilloverDisabled>();
        IncludeType<DeploymentReleased>();
        IncludeType<DeploymentThrottled>();
        IncludeType<ThrottleLifted>();
        IncludeType<TenantSuspended>();
        IncludeType<TenantReinstated>();
        Options.BatchSize = 500;
    }

    public override async Task<IChangeListener> ProcessEventsAsync(EventRange page, ISubscriptionController controller, IDocumentOperations operations, CancellationToken cancellationToken)
    {
        var deploymentIds = new HashSet<string>();
        var tenantIds = new HashSet<string>();
        foreach (var e in page.Events)
        {
            switch (e.Data)
            {
                case TenantSuspended s: tenantIds.Add(s.TenantId); break;
                case TenantReinstated r: tenantIds.Add(r.TenantId); break;
                default: deploymentIds.Add(e.StreamKey!); break;
            }
        }
        foreach (var tenantId in tenantIds)
            deploymentIds.UnionWith(await operations.Query<Deployment>().Where(d => d.TenantId == tenantId).Select(d => d.Id).ToListAsync(cancellationToken));
        await _push.PublishCurrentAsync(operations, deploymentIds, cancellationToken);
        return NullChangeListener.Instance;
    }
}
