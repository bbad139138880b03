using System.Globalization;
using Throughput.Deployments;
using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>
/// One deployment's usage in one UTC hour by record time (the hour its last record finished in, as invoices count it),
/// with spilled tokens by type and the purchased rate: the state from which <see cref="PoolUtilizationProjection"/>
/// counts each hour in its utilization band.
/// </summary>
public sealed record UsageHour(
    string Id,
    string DeploymentId,
    DateTimeOffset Hour,
    int Period,
    TokenCounts Tokens,
    decimal WeightedTokens,
    long TokensPerMinute)
{
    public static DateTimeOffset HourOf(DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return new DateTimeOffset(utc.Year, utc.Month, utc.Day, utc.Hour, 0, 0, TimeSpan.Zero);
    }

    // Integer formatting rather than a date format string: every usage event is slotted by this id, live and in a rebuild.
    public static string IdOf(string deploymentId, DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return string.Create(CultureInfo.InvariantCulture, $"{deploymentId}:{utc.Year:D4}{utc.Month:D2}{utc.Day:D2}{utc.Hour:D2}");
    }

    /// <summary>The pools this hour's band is counted in, as the deployment's shares of one (null: whole in the pool it was bought in).</summary>
    public System.Collections.Immutable.ImmutableDictionary<string, decimal>? CountedIn { get; init; }

    /// <summary>Weighted tokens over what the purchased rate admits in an hour; above 1 when spillover or bursts served more.</summary>
    public decimal Utilization => TokensPerMinute == 0 ? 0 : WeightedTokens / (TokensPerMinute * 60m);

    public static UsageHour Empty(string deploymentId, DateTimeOffset at) =>
        new(IdOf(deploymentId, at), deploymentId, HourOf(at), BillingMonth.Of(at).Index, default, 0, 0);

    public UsageHour Add(UsageMetered e) => this with
    {
        Tokens = Tokens + e.Tokens,
        WeightedTokens = WeightedTokens + e.WeightedTokens,
        TokensPerMinute = Math.Max(TokensPerMinute, e.TokensPerMinute),
    };
}
