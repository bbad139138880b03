using Marten;
using Weasel.Postgresql;
using Weasel.Postgresql.Tables;

namespace Throughput.Invoicing;

/// <summary>
/// What one tenant's draft adds to a month's accrued (earned, not yet invoiced) revenue, as a line in time: the draft's
/// total at the moment it was worked out, less <see cref="RatePerSecond"/> × that moment (Unix seconds), so the draft at
/// any later moment of the month is <c>Base + RatePerSecond × now</c>. The rate is what the account's deployed PTUs not
/// covered by a reservation cost per second; a month that is over, or issued, has none.
/// </summary>
public sealed record Accrual(BillingMonth Month, decimal Base, decimal RatePerSecond);

/// <summary>A month's accrued revenue in one currency: its open drafts summed, projected to <see cref="AsOf"/>.</summary>
/// <param name="Month">The billing month, yyyy-MM (UTC).</param>
/// <param name="Currency">The ISO 4217 currency of the drafts summed.</param>
/// <param name="Accrued">What the month's open drafts in this currency bill up to AsOf, rounded to the currency's minor unit.</param>
/// <param name="AsOf">The moment the drafts are projected to.</param>
public sealed record AccruedRevenue(string Month, string Currency, decimal Accrued, DateTimeOffset AsOf);

/// <summary>
/// Accrued revenue per month and currency, kept so that reading it costs the same for ten tenants or 100,000.
/// Each account's <see cref="Accrual"/> per month is a row of <see cref="AccountTable"/>; <see cref="TotalTable"/> holds
/// their sums per month and currency. One statement writes an account's row and adds the difference from its old row to
/// the total, so the total is always the sum of the rows, whatever order or how often accounts are written (a replay
/// rewrites rows and leaves the invariant). Drafts change between events only as time passes: the rate carries that.
/// Reservation installments and coverage changes falling between an account's events show at its next event (every
/// account with something to bill has one a month at least: its invoice).
/// </summary>
/// <remarks>
/// A month's total is <see cref="Shards"/> rows, each account adding to the one its id hashes to. The daemon writes every
/// account a page touched in one transaction, and a row updated again and again in one transaction is a chain of versions
/// that each later update walks: in psql, 30,000 such updates in one transaction took 5.0 s on one row, 1.4 s over 64.
/// </remarks>
public static class Accruals
{
    public const string AccountTable = "accrual_accounts";
    public const string TotalTable = "accrual_totals";

    const int Shards = 64;

    /// <summary>Months before the event's own whose draft may still be open (issued within a grace period of days).</summary>
    const int MonthsBack = 2;

    public static IEnumerable<Table> Definitions(string schema)
    {
        var accounts = new Table(new PostgresqlObjectName(schema, AccountTable, SchemaUtils.IdentifierUsage.General));
        accounts.AddColumn<string>("tenant_id").AsPrimaryKey();
        accounts.AddColumn<int>("period").AsPrimaryKey();
        accounts.AddColumn<string>("currency").NotNull();
        accounts.AddColumn<decimal>("base").NotNull();
        accounts.AddColumn<decimal>("rate").NotNull();
        var totals = new Table(new PostgresqlObjectName(schema, TotalTable, SchemaUtils.IdentifierUsage.General));
        totals.AddColumn<int>("period").AsPrimaryKey();
        totals.AddColumn<string>("currency").AsPrimaryKey();
        totals.AddColumn<int>("shard").AsPrimaryKey().DefaultValueByExpression("0");
        totals.AddColumn<decimal>("base").NotNull();
        totals.AddColumn<decimal>("rate").NotNull();
        return [accounts, totals];
    }

    /// <summary>The account's accruals for the month of <paramref name="at"/> and the months before it that may still be open.</summary>
    public static IReadOnlyList<Accrual> Of(BillingAccount account, DateTimeOffset at)
    {
        at = InvoiceCalculation.ToSecond(at);
        var current = BillingMonth.Of(at);
        var seconds = (decimal)at.ToUnixTimeSeconds();
        List<Accrual> accruals = [];
        for (var index = current.Index - MonthsBack; index <= current.Index; index++)
        {
            var month = BillingMonth.FromIndex(index);
            if (account.IsIssued(month) || !account.MayBill(month))
            {
                accruals.Add(new Accrual(month, 0, 0));
                continue;
            }
            var total = InvoiceCalculation.Compute(account, month, at).Total;
            // What the month goes on billing: the segments running in the second after `at` (one bought at `at` has none before it).
            var next = at.AddSeconds(1);
            var rate = next <= month.End
                ? InvoiceCalculation.Compute(account, month, next).Lines.Where(l => l.Kind == InvoiceLineKind.Provisioned && l.To == next)
                    .Sum(l => ((l.Ptu ?? 0) - (l.CoveredPtu ?? 0)) * l.UnitPrice / 3600m)
                : 0;
            accruals.Add(new Accrual(month, total - rate * seconds, rate));
        }
        return accruals;
    }

    /// <summary>Whether the events can change a draft: anything that bills but usage with nothing spilled.</summary>
    public static bool MayChangeDrafts(IEnumerable<object> events) => events.Any(e => e switch
    {
        Deployments.UsageMetered u => u.Tokens.HasSpill,
        Deployments.UsageBatchMetered b => b.Usage.Any(u => u.Tokens.HasSpill),
        _ => true,
    });

    /// <summary>
    /// The moment the events bring the account to: the latest time they carry (the host's clock, as the drafts use it);
    /// null if none carries one (the caller takes when they were stored).
    /// </summary>
    public static DateTimeOffset? MomentOf(IEnumerable<object> events) =>
        events.Select(e => e switch
        {
            Tenants.TenantCreated t => t.CreatedAt,
            Deployments.DeploymentCreated d => d.CreatedAt,
            Deployments.DeploymentResized d => d.ResizedAt,
            Deployments.DeploymentReleased d => d.ReleasedAt,
            Deployments.UsageMetered u => u.MeteredAt,
            Deployments.UsageBatchMetered b when b.Usage.Count > 0 => b.Usage.Max(u => u.MeteredAt),
            InvoiceIssued i => i.IssuedAt,
            Deployments.SpilloverCapReached c => c.At,
            Deployments.SpilloverCapLifted l => l.At,
            _ => (DateTimeOffset?)null,
        }).Max();

    /// <summary>Queues, in the projection's transaction, the statements that write the account's rows and move the totals by the difference.</summary>
    public static void Write(IDocumentOperations operations, BillingAccount account, IReadOnlyList<Accrual> accruals)
    {
        var schema = operations.DocumentStore.Options.Events.DatabaseSchemaName;
        foreach (var a in accruals)
        {
            operations.QueueSqlCommand(
                $"""
                with old as (select base, rate from {schema}.{AccountTable} where tenant_id = ? and period = ?),
                saved as (
                    insert into {schema}.{AccountTable} (tenant_id, period, currency, base, rate) values (?, ?, ?, ?, ?)
                    on conflict (tenant_id, period) do update set base = excluded.base, rate = excluded.rate)
                insert into {schema}.{TotalTable} (period, currency, shard, base, rate)
                select ?, ?, hashtext(?) & {Shards - 1}, ? - coalesce((select base from old), 0), ? - coalesce((select rate from old), 0)
                on conflict (period, currency, shard) do update set base = {TotalTable}.base + excluded.base, rate = {TotalTable}.rate + excluded.rate
                """,
                account.Id, a.Month.Index, account.Id, a.Month.Index, account.Currency, a.Base, a.RatePerSecond,
                a.Month.Index, account.Currency, account.Id, a.Base, a.RatePerSecond);
        }
    }

    /// <summary>
    /// The month's accrued revenue per currency at <paramref name="now"/>: the month's rows projected to now, plus the rates
    /// of accounts last worked out in an earlier month (deployments still running, no event since) from the month's start.
    /// Reads a month's shards per currency, however many tenants there are.
    /// </summary>
    public static async Task<IReadOnlyList<AccruedRevenue>> ReadAsync(IQuerySession session, BillingMonth month, DateTimeOffset now, CancellationToken ct)
    {
        var schema = session.DocumentStore.Options.Events.DatabaseSchemaName;
        var rows = await session.QueryAsync<Total>(
            $"select json_build_object('period', period, 'currency', currency, 'base', sum(base), 'rate', sum(rate)) from {schema}.{TotalTable} where period <= ? group by period, currency", ct, month.Index);
        var until = (decimal)InvoiceCalculation.ToSecond(now < month.End ? now : month.End).ToUnixTimeSeconds();
        var start = (decimal)month.Start.ToUnixTimeSeconds();
        if (until < start) return [];
        return rows.GroupBy(r => r.Currency, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new AccruedRevenue(month.ToString(), g.Key, Money.Round(
                g.Where(r => r.Period == month.Index).Sum(r => r.Base + r.Rate * until) + g.Where(r => r.Period < month.Index).Sum(r => r.Rate * (until - start)), g.Key), now))
            .Where(r => r.Accrued != 0)
            .ToList();
    }

    sealed record Total(int Period, string Currency, decimal Base, decimal Rate);
}
