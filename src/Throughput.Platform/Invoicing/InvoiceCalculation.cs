using System.Globalization;
using Throughput.Catalog;

namespace Throughput.Invoicing;

/// <summary>Reserved versus covered PTU-hours of one model, region and deployment type over the period.</summary>
/// <param name="Model">The model reserved.</param>
/// <param name="Region">The region reserved.</param>
/// <param name="Type">The deployment type reserved.</param>
/// <param name="ReservedPtuHours">PTU-hours reserved in the period.</param>
/// <param name="CoveredPtuHours">Of those, PTU-hours of deployed PTUs they covered; the rest went unused.</param>
public sealed record ReservationCoverage(string Model, string Region, DeploymentType Type, decimal ReservedPtuHours, decimal CoveredPtuHours);

/// <summary>What a month bills so far: its lines, their total, and how reservations were used.</summary>
public sealed record InvoiceFigures(IReadOnlyList<InvoiceLine> Lines, decimal Total, IReadOnlyList<ReservationCoverage> Coverage);

/// <summary>
/// The invoice arithmetic, pure: given a tenant's billing facts, a month and a moment, the lines billed for the month
/// up to that moment (the whole month once it is over).
/// <list type="bullet">
/// <item>Provisioned: PTU × seconds deployed × price per PTU-hour ÷ 3600, prorated to the second (instants are cut to
/// whole seconds), one line per segment: a segment ends at each resize, release, month boundary and change of
/// reservation coverage.</item>
/// <item>Coverage: at every second the active reservations of a model, region and deployment type cover that many
/// deployed PTUs of the tenant, oldest deployment first; covered PTUs are not billed hourly (the line shows them).</item>
/// <item>Reservations: paid whether used or not; a month term is charged once in the month it starts, a year term in
/// twelve monthly installments from its start, each 1/12 of the rounded term price, the last taking the cents left.</item>
/// <item>Adapter hosting: adapters × seconds deployed × price per adapter-hour ÷ 3600, prorated to the second, one line
/// per adapter deployment or set and month, after its provisioned lines; reservations do not cover it.</item>
/// <item>Spillover: per 1M tokens by type: input = prompt − cached, cached, output.</item>
/// <item>Prior-period adjustments: spilled usage of issued months, priced as spillover of its deployment.</item>
/// <item>Spillover caps: a cap in force at its month's end clips that month's spillover of what it covers to its amount
/// (less what earlier invoices billed of it), one negative line per deployment after the token lines.</item>
/// <item>Every amount is rounded half away from zero to the currency's minor unit; the total is the sum of the lines.</item>
/// </list>
/// </summary>
public static class InvoiceCalculation
{
    const decimal SecondsPerHour = 3600m;
    const decimal TokensPerMillion = 1_000_000m;

    public static InvoiceFigures Compute(BillingAccount account, BillingMonth month, DateTimeOffset asOf)
    {
        var currency = account.Currency;
        var start = month.Start;
        var end = Min(month.End, ToSecond(asOf));
        var deployments = account.Deployments.Values.OrderBy(d => d.CreatedAt).ThenBy(d => d.Id, StringComparer.Ordinal).ToList();
        var lines = new List<InvoiceLine>();
        var coverage = new List<ReservationCoverage>();

        if (end > start)
        {
            var scopes = deployments.Select(d => (d.Model, d.Region, d.Type))
                .Concat(account.Reservations.Values.Select(r => (r.Model, r.Region, r.Type)))
                .Distinct()
                .ToList();
            var segments = new Dictionary<string, List<Segment>>(StringComparer.Ordinal);
            foreach (var scope in scopes.OrderBy(s => s.Model, StringComparer.Ordinal).ThenBy(s => s.Region, StringComparer.Ordinal).ThenBy(s => s.Type))
            {
                var inScope = deployments.Where(d => (d.Model, d.Region, d.Type) == scope).ToList();
                var reservations = account.Reservations.Values.Where(r => (r.Model, r.Region, r.Type) == scope).ToList();
                var (reserved, covered) = Cut(inScope, reservations, start, end, segments);
                if (reserved > 0)
                    coverage.Add(new ReservationCoverage(scope.Model, scope.Region, scope.Type, Hours(reserved), Hours(covered)));
            }
            foreach (var d in deployments)
            {
                if (!segments.TryGetValue(d.Id, out var list)) continue;
                foreach (var s in list) lines.Add(ProvisionedLine(d, s, currency));
                if (d.Adapters > 0) lines.Add(HostingLine(d, list[0].From, list[^1].To, currency));
            }
        }

        foreach (var r in account.Reservations.Values.OrderBy(r => r.StartsAt).ThenBy(r => r.Id, StringComparer.Ordinal))
        {
            foreach (var (installment, due) in r.Installments())
            {
                if (due >= month.Start && due < month.End && due <= asOf) lines.Add(ReservationLine(r, installment, due, currency));
            }
        }

        var order = deployments.Select((d, i) => (d.Id, i)).ToDictionary(x => x.Id, x => x.i, StringComparer.Ordinal);
        var usage = account.SpilledUsageOn(month).Values
            .Where(u => u.Tokens.HasSpill && account.Deployments.ContainsKey(u.DeploymentId))
            .OrderBy(u => u.ServiceMonth == month.ToString() ? 0 : 1)
            .ThenBy(u => u.ServiceMonth, StringComparer.Ordinal)
            .ThenBy(u => order[u.DeploymentId]);
        foreach (var u in usage)
        {
            var d = account.Deployments[u.DeploymentId];
            foreach (var type in (TokenType[])[TokenType.Input, TokenType.Cached, TokenType.Output])
            {
                var tokens = u.Spilled(type);
                if (tokens > 0) lines.Add(TokenLine(d, u.ServiceMonth, month, type, tokens, currency));
            }
        }

        AddCapClips(account, month, lines, order, currency);

        var numbered = lines.Select((l, i) => l with { Line = i + 1 }).ToList();
        return new InvoiceFigures(numbered, numbered.Sum(l => l.Amount), coverage);
    }

    sealed record Segment(DateTimeOffset From, DateTimeOffset To, decimal Ptu, decimal Covered)
    {
        public long Seconds => (long)(To - From).TotalSeconds;
    }

    /// <summary>Cuts the period at every change of any deployment's PTUs or of the reserved PTUs in the scope, allocates coverage, and merges what did not change.</summary>
    static (decimal ReservedPtuSeconds, decimal CoveredPtuSeconds) Cut(
        List<BilledDeployment> deployments, List<BilledReservation> reservations, DateTimeOffset start, DateTimeOffset end, Dictionary<string, List<Segment>> segments)
    {
        var cuts = new SortedSet<DateTimeOffset> { start, end };
        foreach (var d in deployments)
            foreach (var c in d.Capacity) AddCut(cuts, ToSecond(c.At), start, end);
        foreach (var r in reservations)
        {
            AddCut(cuts, ToSecond(r.StartsAt), start, end);
            AddCut(cuts, ToSecond(r.EndsAt), start, end);
        }

        decimal reservedSeconds = 0, coveredSeconds = 0;
        var points = cuts.ToList();
        for (var i = 0; i + 1 < points.Count; i++)
        {
            var (from, to) = (points[i], points[i + 1]);
            var seconds = (decimal)(long)(to - from).TotalSeconds;
            var reserved = reservations.Where(r => ToSecond(r.StartsAt) <= from && from < ToSecond(r.EndsAt)).Sum(r => r.Ptu);
            reservedSeconds += reserved * seconds;
            var left = reserved;
            foreach (var d in deployments)
            {
                var ptu = PtuAt(d, from);
                if (ptu <= 0) continue;
                var covered = Math.Min(ptu, left);
                left -= covered;
                coveredSeconds += covered * seconds;
                if (!segments.TryGetValue(d.Id, out var list)) segments[d.Id] = list = [];
                if (list is [.., var last] && last.To == from && last.Ptu == ptu && last.Covered == covered)
                    list[^1] = last with { To = to };
                else
                    list.Add(new Segment(from, to, ptu, covered));
            }
        }
        return (reservedSeconds, coveredSeconds);
    }

    static void AddCut(SortedSet<DateTimeOffset> cuts, DateTimeOffset at, DateTimeOffset start, DateTimeOffset end)
    {
        if (at > start && at < end) cuts.Add(at);
    }

    /// <summary>The PTUs deployed during the second starting at <paramref name="at"/>: the last change at or before it.</summary>
    static decimal PtuAt(BilledDeployment d, DateTimeOffset at)
    {
        decimal ptu = 0;
        foreach (var c in d.Capacity)
        {
            if (ToSecond(c.At) <= at) ptu = c.Ptu;
            else break;
        }
        return ptu;
    }

    static InvoiceLine ProvisionedLine(BilledDeployment d, Segment s, string currency)
    {
        var billable = s.Ptu - s.Covered;
        var price = d.Prices.PerPtuHour;
        var amount = Money.Round(billable * s.Seconds * price / SecondsPerHour, currency);
        var covered = s.Covered > 0 ? $", {N(s.Covered)} covered by reservation" : "";
        return new InvoiceLine(0, InvoiceLineKind.Provisioned,
            $"{d.Model} {d.Type} {d.Region} '{d.Name}' ({d.Id}): {N(s.Ptu)} PTU{covered}, {s.From:yyyy-MM-dd HH:mm:ss} – {s.To:yyyy-MM-dd HH:mm:ss} UTC",
            d.Model, d.Region, d.Type, d.Id, null, s.From, s.To,
            decimal.Round(billable * s.Seconds / SecondsPerHour, 6, MidpointRounding.AwayFromZero), "PTU-hour", price, amount,
            Ptu: s.Ptu, CoveredPtu: s.Covered, CoveredPtuHours: decimal.Round(s.Covered * s.Seconds / SecondsPerHour, 6, MidpointRounding.AwayFromZero));
    }

    /// <summary>Hosting runs while the deployment holds PTUs: from its first segment's start to its last one's end in the period.</summary>
    static InvoiceLine HostingLine(BilledDeployment d, DateTimeOffset from, DateTimeOffset to, string currency)
    {
        var seconds = (long)(to - from).TotalSeconds;
        var price = d.Prices.AdapterPerHour;
        return new InvoiceLine(0, InvoiceLineKind.AdapterHosting,
            $"Adapter hosting, {d.Model} {d.Type} {d.Region} '{d.Name}' ({d.Id}): {d.Adapters} adapter{(d.Adapters == 1 ? "" : "s")}, {from:yyyy-MM-dd HH:mm:ss} – {to:yyyy-MM-dd HH:mm:ss} UTC",
            d.Model, d.Region, d.Type, d.Id, null, from, to,
            decimal.Round(d.Adapters * seconds / SecondsPerHour, 6, MidpointRounding.AwayFromZero), "adapter-hour", price,
            Money.Round(d.Adapters * seconds * price / SecondsPerHour, currency));
    }

    static InvoiceLine ReservationLine(BilledReservation r, int installment, DateTimeOffset due, string currency)
    {
        var term = Money.Round(r.Ptu * r.PricePerPtu, currency);
        if (r.Term == ReservationTerm.Month)
        {
            return new InvoiceLine(0, InvoiceLineKind.Reservation,
                $"Reservation {r.Id}: {N(r.Ptu)} PTU {r.Model} {r.Type} {r.Region}, month term {r.StartsAt:yyyy-MM-dd} – {r.EndsAt:yyyy-MM-dd}",
                r.Model, r.Region, r.Type, null, r.Id, r.StartsAt, r.EndsAt, r.Ptu, "PTU-month", r.PricePerPtu, term, Ptu: r.Ptu);
        }
        var monthly = Money.Round(term / 12, currency);
        var amount = installment < 12 ? monthly : term - 11 * monthly;
        return new InvoiceLine(0, InvoiceLineKind.Reservation,
            $"Reservation {r.Id}: {N(r.Ptu)} PTU {r.Model} {r.Type} {r.Region}, year term {r.StartsAt:yyyy-MM-dd} – {r.EndsAt:yyyy-MM-dd}, installment {installment} of 12",
            r.Model, r.Region, r.Type, null, r.Id, due, Min(due.AddMonths(1), r.EndsAt), 1, "installment", amount, amount, Ptu: r.Ptu);
    }

    static InvoiceLine TokenLine(BilledDeployment d, string serviceMonth, BillingMonth month, TokenType type, long tokens, string currency)
    {
        var price = type switch
        {
            TokenType.Input => d.Prices.SpilloverInputPerMillion,
            TokenType.Cached => d.Prices.SpilloverCachedPerMillion,
            _ => d.Prices.SpilloverOutputPerMillion,
        };
        var prior = serviceMonth != month.ToString();
        var what = $"spilled {type.ToString().ToLowerInvariant()} tokens, {d.Model} {d.Type} {d.Region} '{d.Name}' ({d.Id}): {tokens.ToString("#,0", CultureInfo.InvariantCulture)}";
        return new InvoiceLine(0, prior ? InvoiceLineKind.PriorPeriodAdjustment : InvoiceLineKind.Spillover,
            prior ? $"Prior-period adjustment for {serviceMonth}: {what}" : char.ToUpperInvariant(what[0]) + what[1..],
            d.Model, d.Region, d.Type, d.Id, null, null, null,
            tokens / TokensPerMillion, "1M tokens", price, Money.Round(tokens * price / TokensPerMillion, currency),
            TokenType: type, Tokens: tokens, ServiceMonth: serviceMonth);
    }

    /// <summary>
    /// For each cap on spillover this invoice bills (deployment caps first, so a tenant-wide one clips what they left), the
    /// excess over the cap, less what earlier invoices billed of its month, as lines of its own: the scope's net is then
    /// the cap to the cent. A tenant-wide excess is shared among the deployments in proportion to their spillover (each
    /// line names one deployment, as revenue and credit notes count them), the last cent on the largest.
    /// </summary>
    static void AddCapClips(BillingAccount account, BillingMonth month, List<InvoiceLine> lines, Dictionary<string, int> order, string currency)
    {
        var caps = account.Caps.Values
            .OrderBy(c => c.Month, StringComparer.Ordinal).ThenBy(c => c.DeploymentId is null).ThenBy(c => c.AlertId, StringComparer.Ordinal);
        foreach (var cap in caps)
        {
            var covered = account.Deployments.Values.Where(cap.Covers).OrderBy(d => order[d.Id]).ToList();
            var spilled = covered
                .Select(d => (Deployment: d, Net: lines.Where(l => l.DeploymentId == d.Id && l.ServiceMonth == cap.Month && IsSpillover(l.Kind)).Sum(l => l.Amount)))
                .Where(x => x.Net > 0)
                .ToList();
            if (spilled.Count == 0) continue;
            var net = spilled.Sum(x => x.Net);
            var limit = Floor(cap.Amount, currency);
            var billedBefore = covered.Sum(d => account.BilledSpillover(cap.Month, d.Id));
            var excess = net - Math.Max(0, limit - billedBefore);
            if (excess <= 0) continue;
            var shares = spilled.Select(x => Money.Round(excess * x.Net / net, currency)).ToArray();
            var most = spilled.Max(x => x.Net);
            shares[spilled.FindIndex(x => x.Net == most)] += excess - shares.Sum();
            for (var i = 0; i < spilled.Count; i++)
                if (shares[i] != 0) lines.Add(AboveCapLine(spilled[i].Deployment, cap, limit, month, -shares[i], currency));
        }
    }

    /// <summary>The lines that bill a month's spillover, net: its tokens, late ones as adjustments, and what a cap took off.</summary>
    internal static bool IsSpillover(InvoiceLineKind kind) => kind is InvoiceLineKind.Spillover or InvoiceLineKind.PriorPeriodAdjustment or InvoiceLineKind.SpilloverAboveCap;

    static InvoiceLine AboveCapLine(BilledDeployment d, SpilloverCap cap, decimal limit, BillingMonth month, decimal amount, string currency)
    {
        var scope = cap.DeploymentId is null ? "tenant-wide cap" : "cap";
        var what = $"spillover above the {scope} of {Money.Text(limit, currency)} {currency} for {cap.Month} (alert {cap.AlertId}), not billed, {d.Model} {d.Type} {d.Region} '{d.Name}' ({d.Id})";
        var prior = cap.Month != month.ToString();
        return new InvoiceLine(0, InvoiceLineKind.SpilloverAboveCap,
            prior ? $"Prior-period adjustment for {cap.Month}: {what}" : char.ToUpperInvariant(what[0]) + what[1..],
            d.Model, d.Region, d.Type, d.Id, null, null, null, 1, "cap", amount, amount, ServiceMonth: cap.Month);
    }

    /// <summary>A cap finer than the currency's minor unit bills at most the whole units under it: never more than the cap.</summary>
    static decimal Floor(decimal amount, string currency)
    {
        var scale = (decimal)Math.Pow(10, Money.MinorUnitsOf(currency));
        return Money.Round(decimal.Floor(amount * scale) / scale, currency);
    }

    static decimal Hours(decimal ptuSeconds) => decimal.Round(ptuSeconds / SecondsPerHour, 6, MidpointRounding.AwayFromZero);

    static string N(decimal value) => value.ToString("0.####", CultureInfo.InvariantCulture);

    public static DateTimeOffset ToSecond(DateTimeOffset at) => new(at.UtcTicks - at.UtcTicks % TimeSpan.TicksPerSecond, TimeSpan.Zero);

    static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;
}
