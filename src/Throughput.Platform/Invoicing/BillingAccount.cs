using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Reservations;
using Throughput.Tenants;

namespace Throughput.Invoicing;

/// <summary>A PTU level from <see cref="At"/> on; a release is a change to 0.</summary>
public sealed record CapacityChange(DateTimeOffset At, decimal Ptu);

/// <summary>
/// A deployment as billing sees it: what it is, its prices (fixed at purchase), its PTUs over time, and how many adapters
/// it hosts (0 for a base deployment).
/// </summary>
public sealed record BilledDeployment(
    string Id,
    string Name,
    string Model,
    string Region,
    DeploymentType Type,
    PriceList Prices,
    DateTimeOffset CreatedAt,
    ImmutableList<CapacityChange> Capacity,
    int Adapters = 0)
{
    public DateTimeOffset? ReleasedAt => Capacity is [.., { Ptu: 0 } last] ? last.At : null;
}

public sealed record BilledReservation(
    string Id,
    string Model,
    string Region,
    DeploymentType Type,
    decimal Ptu,
    ReservationTerm Term,
    decimal PricePerPtu,
    DateTimeOffset StartsAt,
    DateTimeOffset EndsAt)
{
    /// <summary>When each charge falls due: a month term once at its start, a year term monthly from its start (12 installments).</summary>
    public IEnumerable<(int Installment, DateTimeOffset Due)> Installments() => Term == ReservationTerm.Month
        ? [(1, StartsAt)]
        : Enumerable.Range(0, 12).Select(k => (k + 1, StartsAt.AddMonths(k)));
}

/// <summary>Usage that lands on one invoice: of the invoice's own month, or (<see cref="ServiceMonth"/> earlier) a prior-period adjustment.</summary>
/// <param name="ServiceMonth">The month (yyyy-MM) the usage was served in.</param>
/// <param name="DeploymentId">The deployment that served it.</param>
/// <param name="Tokens">Its token counts.</param>
public sealed record UsageEntry(string ServiceMonth, string DeploymentId, TokenCounts Tokens)
{
    /// <summary>Spilled tokens by the type they are priced as.</summary>
    public long Spilled(TokenType type) => type switch
    {
        TokenType.Input => Tokens.SpilledInputTokens,
        TokenType.Cached => Tokens.SpilledCachedTokens,
        _ => Tokens.SpilledOutputTokens,
    };

    /// <summary>Only spilled tokens, less what was billed of each type already.</summary>
    public TokenCounts UnbilledSpill(long input, long cached, long output)
    {
        var c = Math.Max(0, Tokens.SpilledCachedTokens - cached);
        var i = Math.Max(0, Tokens.SpilledInputTokens - input);
        var o = Math.Max(0, Tokens.SpilledOutputTokens - output);
        return new TokenCounts(0, 0, 0, 0, 0, i + c, c, o);
    }
}

/// <summary>
/// A hard cap on a month's spillover, from <see cref="SpilloverCapReached"/>: a <c>SpilloverSpend</c> alert with
/// <c>capsSpillover</c> crossed in <see cref="Month"/>. It covers one deployment, or (<see cref="DeploymentId"/> null) the
/// tenant's deployments bought before it was reached, together; the invoice bills their spillover of the month up to
/// <see cref="Amount"/> (docs/alerts.md, "The spillover cap").
/// </summary>
/// <param name="AlertId">The alert that set the cap.</param>
/// <param name="Month">The month (yyyy-MM) it caps.</param>
/// <param name="Amount">The alert's threshold, in the tenant's currency.</param>
/// <param name="DeploymentId">The deployment capped; null for all the tenant's deployments together.</param>
/// <param name="ReachedAt">When the alert crossed.</param>
public sealed record SpilloverCap(string AlertId, string Month, decimal Amount, string? DeploymentId, DateTimeOffset ReachedAt)
{
    public static string KeyOf(string month, string alertId) => month + "|" + alertId;

    // Deployments bought after a tenant-wide cap crossed are not capped that month (their spillover is neither refused nor clipped).
    public bool Covers(BilledDeployment d) => DeploymentId is { } one ? one == d.Id : d.CreatedAt <= ReachedAt;
}

/// <summary>
/// A tenant's billing facts, folded from the event log by <see cref="BillingAccountProjection"/>: its deployments' PTUs
/// over time, its reservations, spilled usage per invoice month not yet issued (the only usage billed per token), and the
/// months already issued. Invoice drafts are computed from it by <see cref="InvoiceCalculation"/>; issued months keep
/// nothing here but their invoice id. All usage, spilled or not, is in <see cref="UsageTotals"/>: usage within the purchased
/// rate bills nothing, and rewriting every tenant's account for it was the drafts' lag at thousands of tenants.
/// </summary>
public sealed record BillingAccount(
    string Id,
    string Name,
    string Currency,
    ImmutableDictionary<string, BilledDeployment> Deployments,
    ImmutableDictionary<string, BilledReservation> Reservations,
    ImmutableDictionary<string, ImmutableDictionary<string, UsageEntry>> SpilledUsage,
    ImmutableDictionary<string, string> Issued,
    int? UnissuedSince,
    ImmutableDictionary<string, SpilloverCap>? SpilloverCaps = null,
    ImmutableDictionary<string, decimal>? SpilloverBilled = null)
{
    /// <summary>Caps in force, by month and alert (<see cref="SpilloverCap.KeyOf"/>); a cap lifted within its month is gone.</summary>
    public ImmutableDictionary<string, SpilloverCap> Caps => SpilloverCaps ?? ImmutableDictionary<string, SpilloverCap>.Empty;

    /// <summary>Spillover of a capped month (key: <c>yyyy-MM|deployment</c>) already billed, net of clips, on issued invoices.</summary>
    public decimal BilledSpillover(string month, string deploymentId) =>
        SpilloverBilled is { } billed ? billed.GetValueOrDefault(BilledKey(month, deploymentId)) : 0;

    static string BilledKey(string month, string deploymentId) => month + "|" + deploymentId;

    public static BillingAccount Open(string tenantId, string name, string currency) =>
        new(tenantId, name, currency, ImmutableDictionary<string, BilledDeployment>.Empty, ImmutableDictionary<string, BilledReservation>.Empty,
            ImmutableDictionary<string, ImmutableDictionary<string, UsageEntry>>.Empty, ImmutableDictionary<string, string>.Empty, null);

    public static BillingAccount Opened(TenantCreated e) => Open(e.TenantId, e.Name, e.Currency);

    /// <summary>Folds one event into a tenant's account; events that do not bill leave it as it is.</summary>
    public static BillingAccount Fold(BillingAccount? account, string tenantId, object e)
    {
        account ??= e switch
        {
            TenantCreated t => Opened(t),
            DeploymentCreated d => Open(tenantId, tenantId, d.Currency), // only if the tenant's own event is missing
            _ => Open(tenantId, tenantId, "USD"),
        };
        return e switch
        {
            DeploymentCreated d => account.Then(d),
            DeploymentResized d => account.Then(d),
            DeploymentReleased d => account.Then(d),
            ReservationPurchased r => account.Then(r),
            UsageMetered u => account.Then(u),
            UsageBatchMetered b => b.Usage.Aggregate(account, (a, u) => a.Then(u)),
            InvoiceIssued i => account.Then(i),
            SpilloverCapReached c => account.Then(c),
            SpilloverCapLifted l => account.Then(l),
            _ => account,
        };
    }

    /// <summary>
    /// Folds events in order, as <see cref="Fold"/> one by one would, but each run of usage between other events goes into
    /// one set of builders: a projection page holds thousands of usage entries per tenant, and a new account (and usage
    /// dictionaries) per entry was most of the projection's time in a rebuild.
    /// </summary>
    public static BillingAccount? FoldAll(BillingAccount? account, string tenantId, IEnumerable<object> events)
    {
        UsageRun? run = null;
        foreach (var e in events)
        {
            if (account is not null && e is UsageMetered or UsageBatchMetered)
            {
                run ??= new UsageRun(account);
                if (e is UsageMetered u) run.Add(u);
                else if (e is UsageBatchMetered { Usage: var usage }) for (var i = 0; i < usage.Count; i++) run.Add(usage[i]);
                continue;
            }
            if (run is not null) (account, run) = (run.Finish(), null);
            account = Fold(account, tenantId, e);
        }
        return run?.Finish() ?? account;
    }

    /// <summary>
    /// <see cref="Then(UsageMetered)"/> for many entries: the same target months and entries, each entry's tokens summed and
    /// written once at the end. Usage changes nothing <see cref="Recount"/> reads but which months hold spill, so one recount
    /// at the end, if a month got its first spill, comes to what a recount at that entry would.
    /// </summary>
    sealed class UsageRun(BillingAccount start)
    {
        readonly Dictionary<(BillingMonth Target, BillingMonth Service, string Deployment), TokenCounts> _added = new();
        readonly Dictionary<BillingMonth, BillingMonth> _targets = new();
        readonly Dictionary<BillingMonth, bool> _spilled = new();
        readonly Dictionary<BillingMonth, string> _monthKeys = new();
        bool _recount;

        public void Add(UsageMetered e)
        {
            foreach (var (service, tokens) in new ServiceMonths(e)) Record(service, e.DeploymentId, tokens);
        }

        void Record(BillingMonth service, string deploymentId, TokenCounts tokens)
        {
            if ((tokens = tokens.Spill) == default) return;
            ref var target = ref CollectionsMarshal.GetValueRefOrAddDefault(_targets, service, out var known);
            if (!known) target = InvoiceMonthOf(service, start.IsIssued);
            if (tokens.HasSpill)
            {
                ref var spilled = ref CollectionsMarshal.GetValueRefOrAddDefault(_spilled, target, out var seen);
                if (!seen) spilled = start.SpilledUsage.TryGetValue(MonthKey(target), out var entries) && entries.Values.Any(u => u.Tokens.HasSpill);
                if (!spilled) (_recount, spilled) = (true, true);
            }
            CollectionsMarshal.GetValueRefOrAddDefault(_added, (target, service, deploymentId), out _) += tokens;
        }

        // Keys formatted once per run: the run's usage falls in a month or two.
        string MonthKey(BillingMonth month)
        {
            if (!_monthKeys.TryGetValue(month, out var key)) _monthKeys[month] = key = month.ToString();
            return key;
        }

        public BillingAccount Finish()
        {
            var usage = start.SpilledUsage.ToBuilder();
            var months = new Dictionary<string, ImmutableDictionary<string, UsageEntry>.Builder>(StringComparer.Ordinal);
            foreach (var ((target, service, deploymentId), tokens) in _added)
            {
                var key = MonthKey(target);
                if (!months.TryGetValue(key, out var entries))
                    months[key] = entries = usage.GetValueOrDefault(key, ImmutableDictionary<string, UsageEntry>.Empty).ToBuilder();
                var entryKey = MonthKey(service) + "|" + deploymentId;
                entries[entryKey] = entries.TryGetValue(entryKey, out var existing)
                    ? existing with { Tokens = existing.Tokens + tokens }
                    : new UsageEntry(MonthKey(service), deploymentId, tokens);
            }
            foreach (var (key, entries) in months) usage[key] = entries.ToImmutable();
            var next = start with { SpilledUsage = usage.ToImmutable() };
            return _recount ? Recount(next) : next;
        }
    }

    public bool IsIssued(BillingMonth month) => Issued.Count > 0 && Issued.ContainsKey(month.ToString());

    /// <summary>The spilled usage on the month's invoice: of the month itself, and carried from months issued before it was metered.</summary>
    public ImmutableDictionary<string, UsageEntry> SpilledUsageOn(BillingMonth month) =>
        SpilledUsage.TryGetValue(month.ToString(), out var entries) ? entries : ImmutableDictionary<string, UsageEntry>.Empty;

    public BillingAccount Then(DeploymentCreated e) => Recount(this with
    {
        Deployments = Deployments.SetItem(e.DeploymentId, new BilledDeployment(e.DeploymentId, e.Name, e.Model, e.Region, e.Type, e.Prices, e.CreatedAt, [new CapacityChange(e.CreatedAt, e.Ptu)],
            e.Adapters?.Caps.Count ?? 0)),
    });

    public BillingAccount Then(DeploymentResized e) => Change(e.DeploymentId, new CapacityChange(e.ResizedAt, e.ToPtu));

    public BillingAccount Then(DeploymentReleased e) => Change(e.DeploymentId, new CapacityChange(e.ReleasedAt, 0));

    public BillingAccount Then(ReservationPurchased e) => Recount(this with
    {
        Reservations = Reservations.SetItem(e.ReservationId, new BilledReservation(e.ReservationId, e.Model, e.Region, e.Type, e.Ptu, e.Term, e.PricePerPtu, e.StartsAt, e.EndsAt)),
    });

    /// <summary>
    /// Usage belongs to the month its records finished in (record time). If that month's invoice is already issued, it
    /// lands on the earliest later invoice still open as a prior-period adjustment, whenever it is metered: a November
    /// record metered on 2 January, with December still a draft, goes on December.
    /// </summary>
    public static BillingMonth InvoiceMonthOf(BillingMonth service, Func<BillingMonth, bool> isIssued)
    {
        var month = service;
        while (isIssued(month)) month = month.Next;
        return month;
    }

    /// <summary>The usage's spilled part, on its invoice month (<see cref="InvoiceMonthOf"/>).</summary>
    public BillingAccount Then(UsageMetered e)
    {
        var account = this;
        foreach (var (service, tokens) in new ServiceMonths(e)) account = account.Record(service, e.DeploymentId, tokens);
        return account;
    }

    BillingAccount Record(BillingMonth service, string deploymentId, TokenCounts tokens)
    {
        if ((tokens = tokens.Spill) == default) return this;
        var target = InvoiceMonthOf(service, IsIssued);
        var key = target.ToString();
        var before = SpilledUsage.GetValueOrDefault(key, ImmutableDictionary<string, UsageEntry>.Empty);
        var next = AddUsage(key, before, service, deploymentId, tokens);
        // The months that still need invoicing change only when spilled usage first lands on a month.
        return tokens.HasSpill && !before.Values.Any(u => u.Tokens.HasSpill) ? Recount(next) : next;
    }

    /// <summary>
    /// The month is closed. Usage the account holds for it that the invoice did not bill (it reached this projection
    /// after the draft was read) moves on to the earliest later invoice still open: nothing is billed twice, nothing is lost.
    /// </summary>
    public BillingAccount Then(InvoiceIssued e)
    {
        var month = BillingMonth.Parse(e.Month);
        var issued = this with { Issued = Issued.SetItem(e.Month, e.InvoiceId) };
        var billed = e.Lines.Where(l => l.Tokens is not null && l.DeploymentId is not null)
            .GroupBy(l => (Service: l.ServiceMonth ?? e.Month, Deployment: l.DeploymentId!))
            .ToDictionary(g => g.Key, g => (
                Input: g.Where(l => l.TokenType == TokenType.Input).Sum(l => l.Tokens!.Value),
                Cached: g.Where(l => l.TokenType == TokenType.Cached).Sum(l => l.Tokens!.Value),
                Output: g.Where(l => l.TokenType == TokenType.Output).Sum(l => l.Tokens!.Value)));
        var carryTo = issued.FirstOpenFrom(month.Next);
        var next = issued with { SpilledUsage = SpilledUsage.Remove(e.Month), SpilloverBilled = BilledOnCappedMonths(e) };
        foreach (var entry in SpilledUsageOn(month).Values.OrderBy(u => u.ServiceMonth, StringComparer.Ordinal).ThenBy(u => u.DeploymentId, StringComparer.Ordinal))
        {
            var (input, cached, output) = billed.GetValueOrDefault((entry.ServiceMonth, entry.DeploymentId));
            var unbilled = entry.UnbilledSpill(input, cached, output);
            if (unbilled.HasSpill) next = next.AddUsage(carryTo.ToString(), next.SpilledUsageOn(carryTo), BillingMonth.Parse(entry.ServiceMonth), entry.DeploymentId, unbilled);
        }
        return Recount(next);
    }

    /// <summary>
    /// A tenant-wide cap comes once per deployment it stopped, the same each time. One recorded before caps carried their
    /// amount clips nothing: its month bills as it did.
    /// </summary>
    public BillingAccount Then(SpilloverCapReached e) => e.Cap is { } amount
        ? this with { SpilloverCaps = Caps.SetItem(SpilloverCap.KeyOf(e.Month, e.AlertId), new SpilloverCap(e.AlertId, e.Month, amount, e.TenantWide ? null : e.DeploymentId, e.At)) }
        : this;

    /// <summary>
    /// The alert changed or removed lifts its cap of the month it happened in, which then clips nothing; a cap of an earlier
    /// month was in force at that month's end and keeps clipping it, as does one lifted only because a new month began.
    /// </summary>
    public BillingAccount Then(SpilloverCapLifted e)
    {
        var key = SpilloverCap.KeyOf(BillingMonth.Of(e.At).ToString(), e.AlertId);
        return !e.MonthEnded && Caps.ContainsKey(key) ? this with { SpilloverCaps = Caps.Remove(key) } : this;
    }

    /// <summary>Adds the invoice's spillover of capped months, net of clips, to what was billed of them, for later invoices' clips.</summary>
    ImmutableDictionary<string, decimal>? BilledOnCappedMonths(InvoiceIssued e)
    {
        var capped = Caps.Values.Select(c => c.Month).ToHashSet(StringComparer.Ordinal);
        var billed = SpilloverBilled;
        foreach (var l in e.Lines)
        {
            if (l.DeploymentId is null || !InvoiceCalculation.IsSpillover(l.Kind)) continue;
            var service = l.ServiceMonth ?? e.Month;
            if (!capped.Contains(service)) continue;
            billed ??= ImmutableDictionary<string, decimal>.Empty;
            var key = BilledKey(service, l.DeploymentId);
            billed = billed.SetItem(key, billed.GetValueOrDefault(key) + l.Amount);
        }
        return billed;
    }

    /// <summary>The first month from <paramref name="from"/> on whose invoice is not issued.</summary>
    public BillingMonth FirstOpenFrom(BillingMonth from) => InvoiceMonthOf(from, IsIssued);

    /// <summary>Months not issued that may have something to bill, from the earliest; open-ended deployments run to <paramref name="until"/>.</summary>
    public IEnumerable<BillingMonth> OpenMonthsThrough(BillingMonth until)
    {
        if (UnissuedSince is not { } since) yield break;
        for (var index = since; index <= until.Index; index++)
        {
            var month = BillingMonth.FromIndex(index);
            if (!IsIssued(month) && MayBill(month)) yield return month;
        }
    }

    /// <summary>Whether anything of the account could be billed in the month: a deployment running, an installment due, spilled usage.</summary>
    public bool MayBill(BillingMonth month) =>
        Deployments.Values.Any(d => d.CreatedAt < month.End && (d.ReleasedAt is not { } released || released > month.Start))
        || Reservations.Values.Any(r => r.Installments().Any(i => BillingMonth.Of(i.Due) == month))
        || SpilledUsageOn(month).Values.Any(u => u.Tokens.HasSpill);

    BillingAccount Change(string deploymentId, CapacityChange change) =>
        Deployments.TryGetValue(deploymentId, out var d)
            ? Recount(this with { Deployments = Deployments.SetItem(deploymentId, d with { Capacity = d.Capacity.Add(change) }) })
            : this;

    /// <summary>Adds usage to the entries of the target month (key: <c>yyyy-MM</c>), which the caller has looked up already.</summary>
    BillingAccount AddUsage(string key, ImmutableDictionary<string, UsageEntry> entries, BillingMonth service, string deploymentId, TokenCounts tokens)
    {
        var entryKey = service + "|" + deploymentId;
        var entry = entries.TryGetValue(entryKey, out var existing)
            ? existing with { Tokens = existing.Tokens + tokens }
            : new UsageEntry(service.ToString(), deploymentId, tokens);
        return this with { SpilledUsage = SpilledUsage.SetItem(key, entries.SetItem(entryKey, entry)) };
    }

    /// <summary>Keeps <see cref="UnissuedSince"/>, the earliest month that may still need an invoice, for the issuer's query.</summary>
    static BillingAccount Recount(BillingAccount a)
    {
        int? earliest = null;
        void Consider(int from, int to)
        {
            for (var m = from; m <= to && (earliest is null || m < earliest); m++)
            {
                if (a.IsIssued(BillingMonth.FromIndex(m))) continue;
                earliest = m;
                return;
            }
        }
        foreach (var d in a.Deployments.Values)
        {
            var released = d.ReleasedAt;
            if (released is { } r && r <= d.CreatedAt) continue;
            Consider(BillingMonth.Of(d.CreatedAt).Index, released is { } end ? BillingMonth.Of(end.AddTicks(-1)).Index : int.MaxValue);
        }
        foreach (var r in a.Reservations.Values)
            foreach (var (_, due) in r.Installments()) Consider(BillingMonth.Of(due).Index, BillingMonth.Of(due).Index);
        foreach (var (month, entries) in a.SpilledUsage)
            if (entries.Values.Any(u => u.Tokens.HasSpill)) Consider(BillingMonth.Parse(month).Index, BillingMonth.Parse(month).Index);
        return a.UnissuedSince == earliest ? a : a with { UnissuedSince = earliest };
    }
}
