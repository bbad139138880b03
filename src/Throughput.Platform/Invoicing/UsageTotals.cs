using System.Collections.Immutable;
using System.Runtime.InteropServices;
using JasperFx.Events;
using Marten;
using Throughput.Deployments;

namespace Throughput.Invoicing;

/// <summary>
/// Every token metered, by the invoice it lands on: per tenant, invoice month, service month and deployment, in a table
/// of plain columns the daemon adds each page to in one statement, without reading it first. The invoice month follows
/// <see cref="BillingAccount.InvoiceMonthOf"/>, by the months this projection has seen issued (a table of its own, written
/// in the same page, so live and in a rebuild it sees exactly the invoices before each event). The billing account keeps
/// only the spilled part, which is what bills: at thousands of tenants a page of usage touched every account, and loading,
/// folding and rewriting each one was what held the drafts seconds behind the log. The page's transaction carries the
/// daemon's progress, so a page is added once; a rebuild empties both tables first.
/// </summary>
public sealed class UsageTotals : Marten.Events.Projections.IProjection
{
    public const string Table = "usage_totals";
    public const string IssuedTable = "usage_totals_issued";

    public static readonly Type[] EventTypes = [typeof(UsageBatchMetered), typeof(UsageMetered), typeof(InvoiceIssued), typeof(DeploymentCreated)];

    /// <summary>The tables of this version of the read models: a version that rebuilds from the log starts from empty ones.</summary>
    public static string TableName(string schema) => $"{schema}.{Table}_{Configuration.ReadModels.Version}";

    public static string IssuedTableName(string schema) => $"{schema}.{IssuedTable}_{Configuration.ReadModels.Version}";

    public static IEnumerable<Weasel.Postgresql.Tables.Table> Definitions(string schema)
    {
        var totals = new Weasel.Postgresql.Tables.Table(Name(Table));
        totals.AddColumn<string>("tenant_id").AsPrimaryKey();
        totals.AddColumn<string>("month").AsPrimaryKey();
        totals.AddColumn<string>("service_month").AsPrimaryKey();
        totals.AddColumn<string>("deployment_id").AsPrimaryKey();
        foreach (var column in TokenCountColumns.Names) totals.AddColumn<long>(column).NotNull();
        // A row is added to on every page while its month is open: room beside it keeps the update off the key's index (HOT).
        totals.WithFillFactor(50);
        yield return totals;

        var issued = new Weasel.Postgresql.Tables.Table(Name(IssuedTable));
        issued.AddColumn<string>("tenant_id").AsPrimaryKey();
        issued.AddColumn<string>("month").AsPrimaryKey();
        yield return issued;

        Weasel.Postgresql.PostgresqlObjectName Name(string table) =>
            new(schema, $"{table}_{Configuration.ReadModels.Version}", Weasel.Postgresql.SchemaUtils.IdentifierUsage.General);
    }

    /// <summary>A page's usage summed by (tenant, invoice month, service month, deployment), and the months it saw issued.</summary>
    public sealed record Page(IReadOnlyDictionary<Key, TokenCounts> Totals, IReadOnlyList<(string Tenant, BillingMonth Month)> Issued);

    public readonly record struct Key(string Tenant, BillingMonth Invoice, BillingMonth Service, string Deployment);

    /// <summary>
    /// Folds a page in log order: an invoice issued within the page moves the usage after it, as it moves the account's.
    /// <paramref name="issuedBefore"/> holds the months issued before the page, for the tenants that have any.
    /// </summary>
    public static Page Fold(IEnumerable<object> events, Func<UsageMetered, string?> tenantOf, IReadOnlyDictionary<string, ImmutableHashSet<BillingMonth>> issuedBefore)
    {
        var totals = new Dictionary<Key, TokenCounts>();
        var issued = new List<(string, BillingMonth)>();
        Dictionary<string, ImmutableHashSet<BillingMonth>>? issuedInPage = null;
        foreach (var e in events)
        {
            switch (e)
            {
                case UsageBatchMetered b:
                    for (var i = 0; i < b.Usage.Count; i++) Add(b.Usage[i]);
                    break;
                case UsageMetered u:
                    Add(u);
                    break;
                case InvoiceIssued i:
                    var month = BillingMonth.Parse(i.Month);
                    issuedInPage ??= new(StringComparer.Ordinal);
                    issuedInPage[i.TenantId] = IssuedOf(i.TenantId).Add(month);
                    issued.Add((i.TenantId, month));
                    break;
            }
        }
        return new Page(totals, issued);

        ImmutableHashSet<BillingMonth> IssuedOf(string tenant) =>
            issuedInPage?.GetValueOrDefault(tenant) ?? issuedBefore.GetValueOrDefault(tenant) ?? ImmutableHashSet<BillingMonth>.Empty;

        void Add(UsageMetered u)
        {
            if (tenantOf(u) is not { } tenant) return;
            foreach (var (service, tokens) in new ServiceMonths(u)) Record(tenant, service, u.DeploymentId, tokens);
        }

        void Record(string tenant, BillingMonth service, string deploymentId, TokenCounts tokens)
        {
            var months = IssuedOf(tenant);
            var invoice = months.Count == 0 ? service : BillingAccount.InvoiceMonthOf(service, months.Contains);
            CollectionsMarshal.GetValueRefOrAddDefault(totals, new Key(tenant, invoice, service, deploymentId), out _) += tokens;
        }
    }

    public async Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        var deploymentTenants = await BillingAccountProjection.DeploymentTenantsAsync(operations, events);
        var tenants = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in events)
        {
            switch (e.Data)
            {
                case UsageBatchMetered b:
                    for (var i = 0; i < b.Usage.Count; i++)
                        if (BillingAccountProjection.TenantOf(b.Usage[i], deploymentTenants) is { } tenant) tenants.Add(tenant);
                    break;
                case UsageMetered u when BillingAccountProjection.TenantOf(u, deploymentTenants) is { } tenant:
                    tenants.Add(tenant);
                    break;
            }
        }
        var schema = operations.DocumentStore.Options.Events.DatabaseSchemaName;
        var before = await IssuedAsync(operations, schema, tenants, cancellation);
        var page = Fold(events.Select(e => e.Data), u => BillingAccountProjection.TenantOf(u, deploymentTenants), before);

        if (page.Issued.Count > 0)
            operations.QueueSqlCommand(
                $"insert into {IssuedTableName(schema)} (tenant_id, month) select * from unnest(?::text[], ?::text[]) on conflict do nothing",
                page.Issued.Select(i => i.Tenant).ToArray(), page.Issued.Select(i => i.Month.ToString()).ToArray());
        if (page.Totals.Count == 0) return;
        var rows = page.Totals.ToList();
        operations.QueueSqlCommand(
            $"""
            insert into {TableName(schema)} as t (tenant_id, month, service_month, deployment_id, {string.Join(", ", TokenCountColumns.Names)})
            select * from unnest(?::text[], ?::text[], ?::text[], ?::text[], {TokenCountColumns.Parameters})
            on conflict (tenant_id, month, service_month, deployment_id) do update set
                {string.Join(", ", TokenCountColumns.Names.Select(c => $"{c} = t.{c} + excluded.{c}"))}
            """,
            [rows.Select(r => r.Key.Tenant).ToArray(), rows.Select(r => r.Key.Invoice.ToString()).ToArray(), rows.Select(r => r.Key.Service.ToString()).ToArray(),
                rows.Select(r => r.Key.Deployment).ToArray(), .. TokenCountColumns.Arrays(rows, r => r.Value)]);
    }

    /// <summary>The months issued before this page, for those of these tenants that have any: usually none.</summary>
    static async Task<IReadOnlyDictionary<string, ImmutableHashSet<BillingMonth>>> IssuedAsync(IQuerySession session, string schema, HashSet<string> tenants, CancellationToken ct)
    {
        if (tenants.Count == 0) return ImmutableDictionary<string, ImmutableHashSet<BillingMonth>>.Empty;
        var rows = await session.QueryAsync<IssuedMonths>(
            $"select json_build_object('tenant', tenant_id, 'months', json_agg(month)) from {IssuedTableName(schema)} where tenant_id = any(?) group by tenant_id",
            ct, [tenants.ToArray()]);
        return rows.ToDictionary(r => r.Tenant, r => r.Months.Select(BillingMonth.Parse).ToImmutableHashSet(), StringComparer.Ordinal);
    }

    sealed record IssuedMonths(string Tenant, string[] Months);

    /// <summary>
    /// What a tenant's draft of a month is computed from, as of one commit of the daemon: the billing account, the month's
    /// usage totals and how far the read models are. One statement, so that a page committed between two reads cannot give
    /// the draft usage without the spillover it bills.
    /// </summary>
    public sealed record DraftSource(BillingAccount? Account, UsageEntry[] Usage, long Through);

    public static async Task<DraftSource> DraftSourceAsync(IQuerySession session, string tenantId, BillingMonth month, CancellationToken ct)
    {
        var options = session.DocumentStore.Options;
        var schema = options.Events.DatabaseSchemaName;
        var accounts = options.FindOrResolveDocumentType(typeof(BillingAccount)).TableName.QualifiedName;
        var read = await session.QueryAsync<DraftSource>(
            $"""
            select json_build_object(
                'account', (select data from {accounts} where id = ?),
                'usage', coalesce((select json_agg(json_build_object('serviceMonth', service_month, 'deploymentId', deployment_id, 'tokens', {TokenCountColumns.Json}))
                    from {TableName(schema)} where tenant_id = ? and month = ?), '[]'::json),
                'through', coalesce((select last_seq_id from {schema}.mt_event_progression where name = ?), 0))
            """, ct, tenantId, tenantId, month.ToString(), Drafts.Progress.Identity);
        return read[0];
    }

    /// <summary>
    /// The usage on an invoice, every token of it: the totals metered onto its month, each with the spilled part as the account
    /// holds it, which also carries what earlier invoices did not bill (<see cref="BillingAccount.Then(InvoiceIssued)"/>); by
    /// service month, then deployment.
    /// </summary>
    public static IReadOnlyList<UsageEntry> Merge(IEnumerable<UsageEntry> totals, IReadOnlyDictionary<string, UsageEntry> spilled)
    {
        var entries = totals.ToDictionary(t => t.ServiceMonth + "|" + t.DeploymentId, StringComparer.Ordinal);
        foreach (var (key, part) in spilled)
            entries[key] = entries.TryGetValue(key, out var all) ? all with { Tokens = all.Tokens.WithSpill(part.Tokens) } : part;
        return [.. entries.Values.OrderBy(u => u.ServiceMonth, StringComparer.Ordinal).ThenBy(u => u.DeploymentId, StringComparer.Ordinal)];
    }
}
