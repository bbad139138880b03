using System.Runtime.InteropServices;
using JasperFx.Events;
using JasperFx.Events.Aggregation;
using JasperFx.Events.Daemon;
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
/// never waits on invoicing. Usage reaches an account only when it spilled, and a page of it updates each such account once.
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
        // A spillover cap bills its month up to its amount.
        IncludeType<SpilloverCapReached>();
        IncludeType<SpilloverCapLifted>();
        CustomGrouping(new ByTenant());
    }

    /// <summary>
    /// A tenant's events of one page folded at once (<see cref="BillingAccount.FoldAll"/>), not an account per event; the
    /// account's accrued revenue is written in the same transaction, as of the moment its events bring it to (see
    /// <see cref="Accruals"/>). Not a side effect: the daemon runs those only in continuous mode, and it replays a fresh or
    /// upgraded store's log in catch-up mode first, for as long as events keep arriving.
    /// </summary>
    public override ValueTask<(BillingAccount?, ActionType)> DetermineActionAsync(IQuerySession session, BillingAccount? snapshot,
        string identity, IIdentitySetter<BillingAccount, string> identitySetter, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        if (events.Count == 0) return ValueTask.FromResult((snapshot, ActionType.Nothing));
        var stored = DateTimeOffset.MinValue;
        var data = new object[events.Count];
        for (var i = 0; i < events.Count; i++)
        {
            var e = events[i];
            if (e.Timestamp > stored) stored = e.Timestamp;
            data[i] = e.Data;
        }
        var account = BillingAccount.FoldAll(snapshot, identity, data)!;
        // The daemon hands its batch's operations in as the session.
        if (session is IDocumentOperations operations && Accruals.MayChangeDrafts(data))
            Accruals.Write(operations, account, Accruals.Of(account, Accruals.MomentOf(data) ?? stored));
        return ValueTask.FromResult<(BillingAccount?, ActionType)>((account, ActionType.Store));
    }

    /// <summary>
    /// The tenants of the deployments a page names without their tenant: a deployment's own events, and usage written
    /// before usage named its tenant. Read per page from the page's own <see cref="DeploymentCreated"/>, else the
    /// deployment's snapshot, else its first event (while snapshots are being rebuilt).
    /// </summary>
    internal static async Task<Dictionary<string, string>> DeploymentTenantsAsync(IQuerySession session, IReadOnlyList<IEvent> events)
    {
        var tenants = new Dictionary<string, string>(StringComparer.Ordinal);
        HashSet<string>? unknown = null;
        foreach (var e in events)
        {
            if (e.Data is DeploymentCreated created) tenants[created.DeploymentId] = created.TenantId;
            else if (e.Data is UsageBatchMetered batch)
                for (var i = 0; i < batch.Usage.Count; i++) Need(batch.Usage[i]);
            else if (e.Data is UsageMetered u) Need(u);
            else if (ByTenant.DeploymentOf(e.Data) is { } d) (unknown ??= new(StringComparer.Ordinal)).Add(d);
        }
        if (unknown is not null) await LookUpAsync(session, [.. unknown.Where(d => !tenants.ContainsKey(d))], tenants);
        return tenants;

        void Need(UsageMetered u)
        {
            if (u.TenantId is null) (unknown ??= new(StringComparer.Ordinal)).Add(u.DeploymentId);
        }
    }

    internal static string? TenantOf(UsageMetered u, Dictionary<string, string> tenants) => u.TenantId ?? tenants.GetValueOrDefault(u.DeploymentId);

    static async Task LookUpAsync(IQuerySession session, List<string> deploymentIds, Dictionary<string, string> tenants)
    {
        if (deploymentIds.Count == 0) return;
        foreach (var d in await session.LoadManyAsync<Deployment>(deploymentIds)) tenants[d.Id] = d.TenantId;
        var missing = deploymentIds.Where(id => !tenants.ContainsKey(id)).ToArray();
        if (missing.Length == 0) return;
        var firsts = await session.Events.QueryAllRawEvents().Where(e => missing.Contains(e.StreamKey) && e.Version == 1).ToListAsync();
        foreach (var first in firsts)
            if (first.Data is DeploymentCreated created) tenants[created.DeploymentId] = created.TenantId;
    }

    /// <summary>
    /// A page's events by tenant. Usage goes to an account only for what it spilled, the only usage billed per token
    /// (<see cref="UsageTotals"/> keeps all of it).
    /// </summary>
    sealed class ByTenant : IJasperFxAggregateGrouper<string, IQuerySession>
    {
        public async Task Group(IQuerySession session, IReadOnlyList<IEvent> events, IEventGrouping<string> grouping)
        {
            var tenants = await DeploymentTenantsAsync(session, events);
            foreach (var e in events)
            {
                // A batch's usage goes to each tenant as one event holding that tenant's part, at the batch's sequence: one
                // event per tenant and sequence, since a slice keeps an event once however often it is added.
                if (e.Data is UsageBatchMetered usage)
                {
                    if (!usage.Usage.Any(Spilled)) continue;
                    // A batch of one tenant's usage goes to it as stored.
                    if (OneTenantOf(usage, tenants) is { } only)
                    {
                        grouping.AddEvent(only, e);
                        continue;
                    }
                    foreach (var (owner, part) in Split(usage, tenants)) grouping.AddEvent(owner, new TenantPart(e, part));
                    continue;
                }
                var tenant = e.Data switch
                {
                    TenantCreated t => t.TenantId,
                    DeploymentCreated d => d.TenantId,
                    ReservationPurchased r => r.TenantId,
                    InvoiceIssued i => i.TenantId,
                    UsageMetered u => Spilled(u) ? TenantOf(u, tenants) : null,
                    _ => DeploymentOf(e.Data) is { } d ? tenants.GetValueOrDefault(d) : null,
                };
                if (tenant is not null) grouping.AddEvent(tenant, e);
            }
        }

        static bool Spilled(UsageMetered u) => u.Tokens.Spill != default;

        /// <summary>
        /// The stored event as one tenant's slice sees it: its own part of a batch of several tenants' usage as the data,
        /// everything else the stored event's. Marten's own copy (<c>WithData</c>) draws a new random id per copy, one per
        /// record at 10,000 tenants of one deployment each (9 % of the host's CPU), and looking each tenant's part up by
        /// tenant per event instead cost the daemon 15 % of its time in hash lookups (docs/metering.md).
        /// </summary>
        sealed class TenantPart(IEvent stored, UsageBatchMetered part) : IEvent
        {
            public object Data => part;
            public Type EventType => stored.EventType;
            public Guid Id { get => stored.Id; set => stored.Id = value; }
            public long Version { get => stored.Version; set => stored.Version = value; }
            public long Sequence { get => stored.Sequence; set => stored.Sequence = value; }
            public Guid StreamId { get => stored.StreamId; set => stored.StreamId = value; }
            public string? StreamKey { get => stored.StreamKey; set => stored.StreamKey = value; }
            public DateTimeOffset Timestamp { get => stored.Timestamp; set => stored.Timestamp = value; }
            public string TenantId { get => stored.TenantId; set => stored.TenantId = value; }
            public string EventTypeName { get => stored.EventTypeName; set => stored.EventTypeName = value; }
            public string DotNetTypeName { get => stored.DotNetTypeName; set => stored.DotNetTypeName = value; }
            public string? CausationId { get => stored.CausationId; set => stored.CausationId = value; }
            public string? CorrelationId { get => stored.CorrelationId; set => stored.CorrelationId = value; }
            public Dictionary<string, object>? Headers { get => stored.Headers; set => stored.Headers = value; }
            public IReadOnlyList<EventTag>? Tags => stored.Tags;
            public bool IsArchived { get => stored.IsArchived; set => stored.IsArchived = value; }
            public string? AggregateTypeName { get => stored.AggregateTypeName; set => stored.AggregateTypeName = value; }
            public bool IsSkipped { get => stored.IsSkipped; set => stored.IsSkipped = value; }
            public string? UserName { get => stored.UserName; set => stored.UserName = value; }
            public void AddTag(EventTag tag) => stored.AddTag(tag);
            public void AddTag<TTag>(TTag tag) where TTag : notnull => stored.AddTag(tag);
            public void SetHeader(string key, object value) => stored.SetHeader(key, value);
            public object? GetHeader(string key) => stored.GetHeader(key);
        }

        static Dictionary<string, UsageBatchMetered> Split(UsageBatchMetered batch, Dictionary<string, string> tenants)
        {
            var usage = new Dictionary<string, List<UsageMetered>>(StringComparer.Ordinal);
            for (var i = 0; i < batch.Usage.Count; i++)
            {
                var u = batch.Usage[i];
                if (!Spilled(u) || TenantOf(u, tenants) is not { } tenant) continue;
                ref var own = ref CollectionsMarshal.GetValueRefOrAddDefault(usage, tenant, out _);
                (own ??= new List<UsageMetered>(1)).Add(u);
            }
            var parts = new Dictionary<string, UsageBatchMetered>(usage.Count, StringComparer.Ordinal);
            foreach (var (tenant, own) in usage) parts[tenant] = new UsageBatchMetered(own);
            return parts;
        }

        static string? OneTenantOf(UsageBatchMetered batch, Dictionary<string, string> tenants)
        {
            string? only = null;
            for (var i = 0; i < batch.Usage.Count; i++)
            {
                var u = batch.Usage[i];
                if (!Spilled(u)) continue;
                if (TenantOf(u, tenants) is not { } tenant || (only is not null && !string.Equals(only, tenant, StringComparison.Ordinal))) return null;
                only = tenant;
            }
            return only;
        }

        internal static string? DeploymentOf(object data) => data switch
        {
            DeploymentResized d => d.DeploymentId,
            DeploymentReleased d => d.DeploymentId,
            SpilloverCapReached d => d.DeploymentId,
            SpilloverCapLifted d => d.DeploymentId,
            _ => null,
        };
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
    public static Task<long> ProgressAsync(IDocumentStore store, CancellationToken ct) => store.Advanced.ProjectionProgressFor(Progress, token: ct);

    /// <summary>The billing accounts' progress row, which commits with every read model's page.</summary>
    public static readonly ShardName Progress = new(BillingAccountProjection.ProjectionName, ShardName.All, ReadModels.Version);

    /// <summary>Events in the log the drafts have not folded yet: two index lookups (the log's last sequence, the progress row).</summary>
    public static async Task<long> BehindAsync(IDocumentStore store, CancellationToken ct)
    {
        var progress = await ProgressAsync(store, ct);
        return Math.Max(0, await LastSequenceAsync(store, ct) - progress);
    }

    /// <summary>
    /// How long the first event the drafts have not folded has been in the log, by the database's clock (0 when current):
    /// two index lookups (the progress row, the next sequence).
    /// </summary>
    public static async Task<double> BehindSecondsAsync(IDocumentStore store, CancellationToken ct)
    {
        var progress = await ProgressAsync(store, ct);
        await using var session = store.QuerySession();
        var schema = store.Options.Events.DatabaseSchemaName;
        var age = await session.AdvancedSql.QueryAsync<double>(
            $"select coalesce(extract(epoch from clock_timestamp() - (select timestamp from {schema}.mt_events where seq_id > ? order by seq_id limit 1)), 0)::float8", ct, progress);
        return age.Count > 0 ? Math.Max(0, age[0]) : 0;
    }

    static async Task<long> LastSequenceAsync(IDocumentStore store, CancellationToken ct)
    {
        await using var session = store.QuerySession();
        var schema = store.Options.Events.DatabaseSchemaName;
        var last = await session.AdvancedSql.QueryAsync<long>($"select coalesce(max(seq_id), 0) from {schema}.mt_events", ct);
        return last.Count > 0 ? last[0] : 0;
    }
}
