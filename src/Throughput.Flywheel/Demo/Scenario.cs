using Throughput.Flywheel.Capacity;
using Throughput.Flywheel.Load;

namespace Throughput.Flywheel.Demo;

/// <summary>
/// One customer of the demo: a tenant with one deployment of a workload at a PTU level, offered more load than it bought:
/// a backlog of <paramref name="BacklogMinutes"/> minutes of its purchased rate at the start, so the burst allowance is spent
/// at once, then <paramref name="OfferedFactor"/> times its purchased rate. <paramref name="RaisedPtu"/>, when set, is the
/// level the customer resizes to midway. With a <paramref name="CapacityShare"/> (and <paramref name="RaisedShare"/>) the levels
/// are shares of the fleet's calibrated capacity, set by <see cref="SizedFor"/>.
/// </summary>
public sealed record Customer(
    string Name, Workload Workload, decimal Ptu, decimal? RaisedPtu = null, double OfferedFactor = 1.5, double BacklogMinutes = 1.5,
    double? CapacityShare = null, double? RaisedShare = null)
{
    public Customer SizedFor(decimal capacityPtu) => this with
    {
        Ptu = CapacityShare is { } share ? Math.Round(capacityPtu * (decimal)share, 1) : Ptu,
        RaisedPtu = RaisedShare is { } raised ? Math.Round(capacityPtu * (decimal)raised, 1) : RaisedPtu,
    };

    /// <summary>A tenant id for this customer in one run.</summary>
    public string TenantId(string run)
    {
        var slug = new string([.. Name.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit)]);
        return $"{(slug.Length > 12 ? slug[..12] : slug)}-{run}";
    }
}

/// <summary>
/// The demo's shape: three customers buying 90 % of the fleet's calibrated capacity, the third raising its level midway to
/// 95 %. <see cref="OutputScale"/> shortens generation (quick runs and tests); <see cref="Sell"/> scales every share down.
/// </summary>
public sealed record Scenario
{
    public string Model { get; init; } = "gpt-4o-mini";

    public string Region { get; init; } = "eastus";

    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(5);

    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>When the raised customer resizes; default: the window boundary nearest the middle of the run.</summary>
    public TimeSpan? ResizeAt { get; init; }

    public double OutputScale { get; init; } = 1;

    /// <summary>Scales every customer's share of the fleet (0.5: half of each); quick runs use it to keep headroom for the bursts.</summary>
    public decimal Sell { get; init; } = 1;

    /// <summary>The customers' traffic as calibration offers it: each workload, outputs scaled, at its share of the fleet.</summary>
    public IReadOnlyList<MixShare> Mix => [.. Customers.Select(c => new MixShare(c.Workload.Scaled(OutputScale), c.CapacityShare ?? 1))];

    /// <summary>The customers sized for a fleet of <paramref name="capacityPtu"/> (scaled by <see cref="Sell"/>), outputs scaled.</summary>
    public IReadOnlyList<Customer> SizedFor(decimal capacityPtu) =>
        [.. Customers.Select(c => c.SizedFor(capacityPtu * Sell) with { Workload = c.Workload.Scaled(OutputScale) })];

    public IReadOnlyList<Customer> Customers { get; init; } =
    [
        new("Contoso Docs", Workload.DocumentCreation, Ptu: 0, CapacityShare: 0.30),
        new("Fabrikam Digest", Workload.Summarization, Ptu: 0, CapacityShare: 0.50),
        new("Northwind Chat", Workload.Chat, Ptu: 0, OfferedFactor: 3, CapacityShare: 0.10, RaisedShare: 0.15),
    ];

    public TimeSpan EffectiveResizeAt => ResizeAt ?? Window * Math.Max(1, Math.Round(Duration / 2 / Window, MidpointRounding.AwayFromZero));

    /// <summary>PTUs the pool must have free for the run.</summary>
    public decimal PtuNeeded => Customers.Sum(c => Math.Max(c.Ptu, c.RaisedPtu ?? 0));
}
