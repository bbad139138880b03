using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Marten.Services;
using Marten.Subscriptions;
using Throughput.Deployments;
using Throughput.Tenants;

namespace Throughput.Admission;

/// <summary>The events that change what serving nodes may admit, and the deployments whose limits they change.</summary>
public static class LimitChanges
{
    public static readonly IReadOnlySet<Type> EventTypes = new HashSet<Type>
    {
        typeof(DeploymentCreated), typeof(DeploymentResized), typeof(SpilloverEnabled), typeof(SpilloverDisabled), typeof(SpilloverCapReached), typeof(SpilloverCapLifted), typeof(DeploymentReleased), typeof(DeploymentPlaced),
        typeof(DeploymentThrottled), typeof(ThrottleLifted), typeof(TenantSuspended), typeof(TenantReinstated),
    };

    /// <summary>A tenant's suspension or reinstatement changes every one of its deployments.</summary>
    public static async Task<HashSet<string>> DeploymentsAsync(IEnumerable<IEvent> changes, IQuerySession session, CancellationToken ct)
    {
        var deploymentIds = new HashSet<string>();
        var tenantIds = new HashSet<string>();
        foreach (var e in changes)
        {
            switch (e.Data)
            {
                case TenantEvent t: tenantIds.Add(t.TenantId); break;
                default: deploymentIds.Add(e.StreamKey!); break;
            }
        }
        foreach (var tenantId in tenantIds)
            deploymentIds.UnionWith(await session.Query<Deployment>().Where(d => d.TenantId == tenantId).Select(d => d.Id).ToListAsync(ct));
        return deploymentIds;
    }
}

/// <summary>
/// The reliable path for admission pushes: a Marten subscription (async daemon, leader only) that forwards every
/// limit change. Its progress only moves after the broker confirmed, so a crash between the event and the publish
/// re-sends instead of losing the change. <see cref="PushAfterCommit"/> usually got there first; the repeat carries the
/// same version and is ignored.
/// </summary>
public sealed class AdmissionForwarder : SubscriptionBase
{
    readonly AdmissionPush _push;

    public AdmissionForwarder(AdmissionPush push)
    {
        _push = push;
        Name = "admission-forwarder";
        foreach (var type in LimitChanges.EventTypes) IncludeType(type);
        Options.BatchSize = 500;
    }

    public override async Task<IChangeListener> ProcessEventsAsync(EventRange page, ISubscriptionController controller, IDocumentOperations operations, CancellationToken cancellationToken)
    {
        await _push.PublishCurrentAsync(operations, await LimitChanges.DeploymentsAsync(page.Events, operations, cancellationToken), cancellationToken);
        return NullChangeListener.Instance;
    }
}

/// <summary>
/// The fast path for admission pushes: after any commit that changed a limit, whoever wrote it (a customer's purchase,
/// an operator's suspension, a metering batch's throttle, the lifter), the new limits go out without holding back the
/// writer's answer or acknowledgement behind a broker slow to confirm. Best effort: the forwarder delivers every change.
/// </summary>
public sealed class PushAfterCommit(AdmissionPush push, ILogger<PushAfterCommit> log) : DocumentSessionListenerBase
{
    public override Task AfterCommitAsync(IDocumentSession session, IChangeSet commit, CancellationToken token)
    {
        var changes = commit.GetEvents().Where(e => LimitChanges.EventTypes.Contains(e.EventType)).ToList();
        if (changes.Count > 0) _ = Task.Run(() => PushAsync(session.DocumentStore, changes), CancellationToken.None);
        return Task.CompletedTask;
    }

    async Task PushAsync(IDocumentStore store, IReadOnlyList<IEvent> changes)
    {
        try
        {
            await using var session = store.QuerySession();
            await push.PublishCurrentAsync(session, await LimitChanges.DeploymentsAsync(changes, session, CancellationToken.None), CancellationToken.None);
        }
        catch (Exception e)
        {
            log.LogWarning(e, "Admission push after commit failed; the forwarder subscription will deliver it");
        }
    }
}
