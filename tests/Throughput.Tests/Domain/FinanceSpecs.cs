using System.Collections.Immutable;
using Throughput.Capacity;
using Throughput.Deployments;
using Throughput.Finance;
using Throughput.Invoicing;

namespace Throughput.Tests.Domain;

public class FinanceSpecs
{
    static readonly BillingMonth January = new(2030, 1), February = new(2030, 2);
    static readonly CapacityPool Pool = new(CapacityPool.StreamId("gpt-4o", "eastus"), "gpt-4o", "eastus", 0, 0, 0);

    static DateTimeOffset At(int month, int day, int hour, int minute = 0, int second = 0) => new(2030, month, day, hour, minute, second, TimeSpan.Zero);

    static UsageMetered Usage(string deploymentId, decimal weightedTokens, DateTimeOffset finishedAt, long tokensPerMinute = 2500) =>
        new(deploymentId, "acme", [], new TokenCounts(1, (long)weightedTokens, 0, 0, 0, 0, 0, 0), weightedTokens, finishedAt, finishedAt, 0, 0, tokensPerMinute, finishedAt);

    static DeploymentCreated Created(string id, decimal ptu, DateTimeOffset at) => Fixtures.Created(ptu) with { DeploymentId = id, CreatedAt = at };

    [Fact]
    public void A_levels_integral_over_a_month_equals_the_sum_of_its_segments()
    {
        // 10 PTU from before the month; +5 on the 11th at noon; −8 on the 21st at 06:00:30
        var changes = default(LevelChanges).Add(5, January, At(1, 11, 12)).Add(-8, January, At(1, 21, 6, 0, 30));

        var toTheEnd = changes.Integral(10, January, January.End);
        var toDate = changes.Integral(10, January, At(1, 25, 12));

        var s = (DateTimeOffset a, DateTimeOffset b) => (decimal)(b - a).TotalSeconds;
        Assert.Equal(10 * s(January.Start, At(1, 11, 12)) + 15 * s(At(1, 11, 12), At(1, 21, 6, 0, 30)) + 7 * s(At(1, 21, 6, 0, 30), January.End), toTheEnd);
        Assert.Equal(10 * s(January.Start, At(1, 11, 12)) + 15 * s(At(1, 11, 12), At(1, 21, 6, 0, 30)) + 7 * s(At(1, 21, 6, 0, 30), At(1, 25, 12)), toDate);
        Assert.Equal(0, changes.Integral(10, February, At(1, 31, 0)));
    }

    [Fact]
    public void Sell_through_carries_a_pools_level_into_months_without_changes()
    {
        var december = PoolMonth.Empty(Pool.Id, At(1, 1, 0).AddDays(-10)).Then(At(1, 1, 0).AddDays(-10), 20, 0).Then(At(1, 1, 0).AddDays(-5), 0, 5);
        var february = PoolMonth.Empty(Pool.Id, At(2, 15, 0)).Then(At(2, 15, 0), 0, 5);
        var pools = new Dictionary<string, CapacityPool> { [Pool.Id] = Pool };

        var jan = Assert.Single(SellThroughView.Of([december, february], pools, January, At(3, 1, 0)));
        var feb = Assert.Single(SellThroughView.Of([december, february], pools, February, At(2, 22, 0)));

        Assert.Equal((20m * 31 * 24, 5m * 31 * 24, 0.25m), (jan.CapacityPtuHours, jan.SoldPtuHours, jan.SellThrough));
        // February to the 22nd: 21 days of capacity, 5 PTU for 21 days and 5 more for the last 7
        Assert.Equal((20m * 21 * 24, 5m * 21 * 24 + 5m * 7 * 24), (feb.CapacityPtuHours, feb.SoldPtuHours));
    }

    [Fact]
    public void An_hour_that_moves_to_another_band_is_counted_once_in_the_new_band()
    {
        // 1 PTU admits 2,500 tokens a minute: 150,000 an hour
        var first = UtilizationPage.Fold([Created("dep-1", 1, At(1, 31, 22)), Usage("dep-1", 15_000, At(1, 31, 23, 10))], new Dictionary<string, PooledDeployment>(), new Dictionary<string, UsageHour>());
        var month = Assert.Single(first.Changes.Values);
        Assert.Equal(ImmutableDictionary<string, long>.Empty.Add("10-20%", 1), month.UsedHours);

        var second = UtilizationPage.Fold([Usage("dep-1", 120_000, At(1, 31, 23, 50))], first.Deployments, first.Hours);
        var total = month.Plus(Assert.Single(second.Changes.Values));

        Assert.Equal(1, total.UsedHours["90-100%"]);
        Assert.Equal(0, total.UsedHours["10-20%"]);
        Assert.Equal(135_000m, second.Hours[UsageHour.IdOf("dep-1", At(1, 31, 23))].WeightedTokens);
    }

    [Fact]
    public void Deployment_hours_sold_count_the_time_a_deployment_holds_ptus_and_nothing_after_its_release()
    {
        var page = UtilizationPage.Fold(
        [
            Created("dep-1", 1, At(1, 31, 20)),
            Created("dep-2", 2, At(1, 31, 22)),
            new DeploymentResized("dep-2", 2, 0, At(1, 31, 23)),
            new DeploymentReleased("dep-1", 1, At(1, 31, 23, 30)),
            new DeploymentReleased("dep-2", 0, At(1, 31, 23, 45)),
        ], new Dictionary<string, PooledDeployment>(), new Dictionary<string, UsageHour>());

        var rows = UtilizationView.Of(page.Changes.Values, new Dictionary<string, CapacityPool> { [Pool.Id] = Pool }, January, At(2, 2, 0));

        // dep-1 20:00 → 23:30 (3.5 h), dep-2 22:00 → 23:00 (1 h), no usage: all idle
        Assert.Equal(("idle", 4.5m, 1m), (Assert.Single(rows).Band, rows[0].DeploymentHours, rows[0].Share));
        Assert.False(page.Deployments["dep-1"].HoldsPtus);
    }
}
