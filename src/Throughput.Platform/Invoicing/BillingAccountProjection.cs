using System.Collections.Concurrent;
using JasperFx.Events;
using JasperFx.Events.Grouping;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Throughput.Deployments;
using Throughput.Configuration;
using Throughput.Reservations;
using Throughput.Tenants;

namespace Throughput.Invoicing;

/// <summary>
/// Folds every event that bills into its tenant's <see cref="BillingAccount"/>: async (Marten daemon), so metering
/// never waits on invoicing. A page of usage events updates each tenant's account once.
/// </summary>
public sealed class BillingAccountProjection : MultiStreamProjection<BillingAccount, string>
{
    public const string ProjectionName = "BillingAccount";

    public BillingAccountProjection()
    {
        Name = ProjectionName;
        IncludeType<TenantCreated>();
        IncludeType<DeploymentCreated>();
        IncludeType<DeploymentResized>();
        IncludeType<DeploymentReleased>();
        IncludeType<ReservationPurchased>();
        IncludeType<UsageMetered>();
        IncludeType<UsageBatchMetered>();
        IncludeType<InvoiceIssued>();
        CustomGrouping(new ByTenant());
    }

    public override BillingAccount? Evolve(BillingAccount? snapshot, string id, IEvent e) =>
        BillingAccount.Fold(snapshot, id, e.Data).Projected(e.Sequence);

    /// <summary>
    /// Usage and deployment events name a deployment, not its tenant. A deployment's tenant never changes, so it is
    /// cached; a miss reads the deployment's snapshot, or its first event while snapshots are being rebuilt.
    /// </summary>
    sealed class ByTenant : IJasperFxAggregateGrouper<string, IQuerySession>
    {
        const int CacheLimit = 1_000_000;
        static readonly ConcurrentDictionary<string, string> TenantOfDeployment = new(StringComparer.Ordinal);

        public async Task Group(IQuerySession session, IReadOnlyList<IEvent> events, IEventGrouping<string> grouping)
        {
            foreach (var e in events)
            {
                if (e.Data is DeploymentCreated created) Remember(created.DeploymentId, created.TenantId);
            }
            var unknown = events.SelectMany(e => e.Data is UsageBatchMetered batch ? batch.Usage.Select(u => (string?)u.DeploymentId) : [DeploymentOf(e)]).OfType<string>()
                .Where(id => !TenantOfDeployment.ContainsKey(id)).Distinct().ToList();
            if (unknown.Count > 0) await LookUpAsync(session, unknown);

            foreach (var e in events)
            {
                // A batch's usage goes to each tenant as one event holding that tenant's part, at the batch's sequence: one
                // event per tenant and sequence, since a slice keeps an event once however often it is added.
                if (e.Data is UsageBatchMetered usage)
                {
                    foreach (var part in usage.Usage.GroupBy(u => TenantOfDeployment.GetValueOrDefault(u.DeploymentId)))
                        if (part.Key is not null) grouping.AddEvent(part.Key, e.WithData(new UsageBatchMetered([.. part])));
                    continue;
                }
                var tenant = e.Data switch
                {
                    TenantCreated t => t.TenantId,
                    ReservationPurchased r => r.TenantId,
                    InvoiceIssued i => i.TenantId,
                    _ => DeploymentOf(e) is { } d ? TenantOfDeployment.GetValueOrDefault(d) : null,
                };
                if (tenant is not null) grouping.AddEvent(tenant, e);
            }
        }

        static string? DeploymentOf(IEvent e) => e.Data switch
        {
            DeploymentCreated d => d.DeploymentId,
            DeploymentResized d => d.DeploymentId,
            DeploymentReleased d => d.DeploymentId,
            UsageMetered u => u.DeploymentId,
            _ => null,
        };

        static void Remember(string deploymentId, string tenantId)
        {
            if (TenantOfDeployment.Count > CacheLimit) TenantOfDeployment.Clear();
            TenantOfDeployment[deploymentId] = tenantId;
        }

        static async Task LookUpAsync(IQuerySession session, List<string> deploymentIds)
        {
            foreach (var d in await session.LoadManyAsync<Deployment>(deploymentIds)) Remember(d.Id, d.TenantId);
            foreach (var id in deploymentIds.Where(id => !TenantOfDeployment.ContainsKey(id)))
            {
                var first = await session.Events.FetchStreamAsync(id, version: 1);
                if (first is [{ Data: DeploymentCreated created }, ..]) Remember(created.DeploymentId, created.TenantId);
            }
        }
    }
}

/// <summary>How far the invoice drafts are behind the event log.</summary>
public static class Drafts
{
    static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    /// <summary>Waits until the drafts hold every event committed before the call; false if that took longer than <paramref name="timeout"/>.</summary>
    public static async Task<bool> WaitUntilCurrentAsync(IDocumentStore store, TimeSpan timeout, CancellationToken ct)
    {
        var target = await LastSequenceAsync(store, ct);
        var deadline = DateTime.UtcNow + timeout;
        while (await ProgressAsync(store, ct) < target)
        {
            if (DateTime.UtcNow > deadline) return false;
            await Task.Delay(Poll, ct);
        }
        return true;
    }

    /// <summary>
    /// The current version's progress only: a store upgraded from an earlier version keeps that version's progress row,
    /// frozen and possibly ahead while the new documents catch up.
    /// </summary>
    public static Task<long> ProgressAsync(IDocumentStore store, CancellationToken ct) =>
        store.Advanced.ProjectionProgressFor(new ShardName(BillingAccountProjection.ProjectionName, ShardName.All, ReadModels.Version), token: ct);

    static async Task<long> LastSequenceAsync(IDocumentStore store, CancellationToken ct)
    {
        await using var session = store.QuerySession();
        var schema = store.Options.Events.DatabaseSchemaName;
        var last = await session.AdvancedSql.QueryAsync<long>($"select coalesce(max(seq_id), 0) from {schema}.mt_events", ct);
        return last.Count > 0 ? last[0] : 0;
    }
}
