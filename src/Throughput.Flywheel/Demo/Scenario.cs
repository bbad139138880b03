using Throughput.Flywheel.Load;

namespace Throughput.Flywheel.Demo;

/// <summary>
/// One customer of the demo: a tenant with one deployment of a workload at a PTU level, offered more load than it bought:
/// a backlog of <paramref name="BacklogMinutes"/> minutes of its purchased rate at the start, so the burst allowance is spent
/// at once, then <paramref name="OfferedFactor"/> times its purchased rate. <paramref name="RaisedPtu"/>, when set, is the
/// level the customer resizes to midway.
/// </summary>
public sealed record Customer(string Name, Workload Workload, decimal Ptu, decimal? RaisedPtu = null, double OfferedFactor = 1.5, double BacklogMinutes = 1.5)
{
    /// <summary>A tenant id for this customer in one run.</summary>
    public string TenantId(string run)
    {
        var slug = new string([.. Name.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit)]);
        return $"{(slug.Length > 12 ? slug[..12] : slug)}-{run}";
    }
}

/// <summary>
/// The demo's shape. Rates are chosen so a reporting window holds dozens of requests per customer: one request is the grain
/// of admission, and a window of a handful of requests cannot show a rate to within a few percent. GPU capacity (two nodes of
/// 4,096 tokens per 25 ms, ~20M tokens a minute) is far above what the customers buy, so the purchased rate is what binds.
/// </summary>
public sealed record Scenario
{
    public string Model { get; init; } = "gpt-4o-mini";

    public string Region { get; init; } = "eastus";

    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(5);

    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>When the raised customer resizes; default: the window boundary nearest the middle of the run.</summary>
    public TimeSpan? ResizeAt { get; init; }

    public IReadOnlyList<Customer> Customers { get; init; } =
    [
        new("Contoso Docs", Workload.DocumentCreation, Ptu: 20m),
        new("Fabrikam Digest", Workload.Summarization, Ptu: 40m),
        new("Northwind Chat", Workload.Chat, Ptu: 15m, RaisedPtu: 30m, OfferedFactor: 3),
    ];

    public TimeSpan EffectiveResizeAt => ResizeAt ?? Window * Math.Max(1, Math.Round(Duration / 2 / Window, MidpointRounding.AwayFromZero));

    /// <summary>PTUs the pool must have free for the run.</summary>
    public decimal PtuNeeded => Customers.Sum(c => Math.Max(c.Ptu, c.RaisedPtu ?? 0));
}
