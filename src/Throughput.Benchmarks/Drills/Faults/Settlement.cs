namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>A measure of one deployment on which a view of the platform disagrees with what was published.</summary>
public sealed record Difference(string Deployment, string View, string Measure, decimal Published, decimal Billed);

/// <summary>The invoice check of one deployment: spillover tokens and amounts by token type, and the draft's total.</summary>
public sealed record InvoiceComparison(string Deployment, decimal ExpectedTotal, decimal BilledTotal, decimal ExpectedSpillover, decimal BilledSpillover, IReadOnlyList<Difference> Differences);

/// <summary>
/// Published against billed at one settled moment (the load paused, the publishers flushed, the platform given time to
/// catch up), cumulative since the drill began. Records lost or double-counted are summed per deployment, so a loss in one
/// deployment never hides behind a duplicate in another.
/// </summary>
public sealed record Settlement(
    int Round, DateTimeOffset At, TimeSpan Took, long HandedOver, long Confirmed, long DeadLettered,
    IReadOnlyDictionary<string, UsageFigures> Published, IReadOnlyDictionary<string, BilledUsage> Billed, SpilloverPrices Prices)
{
    public static readonly string[] TokenTypes = ["Input", "Cached", "Output"];

    /// <summary>Records published but not billed by <paramref name="view"/>, since <paramref name="earlier"/> (or the start).</summary>
    public long Lost(string view, Settlement? earlier = null) => RecordGaps(view, earlier).Sum(g => Math.Max(0, g.Published - g.Billed));

    public long DoubleCounted(string view, Settlement? earlier = null) => RecordGaps(view, earlier).Sum(g => Math.Max(0, g.Billed - g.Published));

    public long PublishedRecords(Settlement? earlier = null) => Published.Sum(p => p.Value.Records - (earlier?.Published.GetValueOrDefault(p.Key)?.Records ?? 0));

    public long BilledRecords(string view, Settlement? earlier = null) => RecordGaps(view, earlier).Sum(g => g.Billed);

    /// <summary>Every measure a view reports that differs from the published sums.</summary>
    public IReadOnlyList<Difference> Differences() =>
    [
        .. from p in Published
           let billed = Billed[p.Key]
           from view in BilledUsage.Views
           from figure in view.Of(billed).Values
           where figure.Value != p.Value[figure.Key]
           select new Difference(p.Key, view.Name, figure.Key.ToString(), p.Value[figure.Key], figure.Value),
    ];

    /// <summary>
    /// The draft against the published spill: each token type's line holds the spilled tokens (input = prompt − cached) at
    /// the catalog's price, rounded half away from zero to the cent, and the total is the other lines plus those.
    /// </summary>
    public IReadOnlyList<InvoiceComparison> Invoices() =>
    [
        .. Published.Select(p =>
        {
            var bill = Billed[p.Key].Bill;
            var expected = new Dictionary<string, (long Tokens, decimal Price)>
            {
                ["Input"] = ((long)(p.Value[Measure.SpilledPrompt] - p.Value[Measure.SpilledCached]), Prices.Input),
                ["Cached"] = ((long)p.Value[Measure.SpilledCached], Prices.Cached),
                ["Output"] = ((long)p.Value[Measure.SpilledOutput], Prices.Output),
            };
            var differences = new List<Difference>();
            decimal expectedSpill = 0;
            foreach (var type in TokenTypes)
            {
                var (tokens, price) = expected[type];
                var amount = decimal.Round(tokens * price / 1_000_000m, 2, MidpointRounding.AwayFromZero);
                expectedSpill += amount;
                var line = bill.Spillover.GetValueOrDefault(type);
                if (line.Tokens != tokens) differences.Add(new Difference(p.Key, "invoice draft", $"spillover {type.ToLowerInvariant()} tokens", tokens, line.Tokens));
                // Lines of two months are rounded apart, so amounts are compared only within one month.
                if (line.Amount != amount && bill.Months == 1) differences.Add(new Difference(p.Key, "invoice draft", $"spillover {type.ToLowerInvariant()} amount", amount, line.Amount));
            }
            var expectedTotal = bill.OtherLines + expectedSpill;
            if (bill.Total != expectedTotal && bill.Months == 1) differences.Add(new Difference(p.Key, "invoice draft", "total", expectedTotal, bill.Total));
            return new InvoiceComparison(p.Key, expectedTotal, bill.Total, expectedSpill, bill.Spillover.Values.Sum(l => l.Amount), differences);
        }),
    ];

    public bool Exact => Differences().Count == 0 && Invoices().All(i => i.Differences.Count == 0) && Confirmed == HandedOver;

    IEnumerable<(long Published, long Billed)> RecordGaps(string view, Settlement? earlier)
    {
        var of = BilledUsage.Views.Single(v => v.Name == view).Of;
        foreach (var (deployment, published) in Published)
        {
            var before = earlier?.Published.GetValueOrDefault(deployment)?.Records ?? 0;
            var billedBefore = earlier is null ? 0 : of(earlier.Billed[deployment]).Records;
            yield return (published.Records - before, of(Billed[deployment]).Records - billedBefore);
        }
    }
}
