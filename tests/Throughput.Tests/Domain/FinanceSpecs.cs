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
        Assert.Equal(ImmutableDictionary<string, decimal>.Empty.Add("10-20%", 1), month.UsedHours);

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

    static readonly string East2 = CapacityPool.StreamId("gpt-4o", "eastus2");

    [Fact]
    public void A_split_deployment_counts_in_each_pool_it_is_placed_in_by_its_share_of_the_placed_ptus()
    {
        // 4 PTU bought in eastus, placed 3 in eastus and 1 in eastus2 from 20:00; 4 PTU admit 10,000 tokens a minute, 600,000 an hour
        var page = UtilizationPage.Fold(
        [
            Created("dep-1", 4, At(1, 31, 20)),
            new DeploymentPlaced("dep-1", [new PlacedPtu("eastus", 3), new PlacedPtu("eastus2", 1)], 0, "purchase", At(1, 31, 20)),
            Usage("dep-1", 330_000, At(1, 31, 21, 30), tokensPerMinute: 10_000),
        ], new Dictionary<string, PooledDeployment>(), new Dictionary<string, UsageHour>());
        var pools = new Dictionary<string, CapacityPool> { [Pool.Id] = Pool, [East2] = Pool with { Id = East2, Region = "eastus2" } };

        var rows = UtilizationView.Of(page.Changes.Values, pools, January, At(1, 31, 22)).ToLookup(r => r.Region);

        // two deployment-hours sold (20:00 → 22:00), one used at 55%: eastus counts 3/4 of each, eastus2 1/4
        Assert.Equal([("idle", 0.75m), ("50-60%", 0.75m)], rows["eastus"].Select(r => (r.Band, r.DeploymentHours)));
        Assert.Equal([("idle", 0.25m), ("50-60%", 0.25m)], rows["eastus2"].Select(r => (r.Band, r.DeploymentHours)));
        Assert.Equal(247_500m, page.Changes[PoolUtilization.IdOf(Pool.Id, January.Index)].Served);
        Assert.Equal(82_500m, page.Changes[PoolUtilization.IdOf(East2, January.Index)].Served);
        Assert.Equal(4m, page.Changes[PoolUtilization.IdOf(Pool.Id, January.Index)].Bought.Sum); // bought, and billed, in eastus
        Assert.Equal(0m, page.Changes[PoolUtilization.IdOf(East2, January.Index)].Bought.Sum);
        Assert.Equal(82_500m, page.Minutes[PoolMinute.IdOf(East2, At(1, 31, 21, 30))].WeightedTokens);
    }

    [Fact]
    public void An_hour_stays_in_the_pools_it_was_first_counted_in_when_the_deployment_moves_within_it()
    {
        var first = UtilizationPage.Fold([Created("dep-1", 1, At(1, 31, 22)), Usage("dep-1", 15_000, At(1, 31, 23, 10))],
            new Dictionary<string, PooledDeployment>(), new Dictionary<string, UsageHour>());

        // drained to eastus2 at 23:20; the hour's next usage moves it from 10-20% to 90-100%
        var second = UtilizationPage.Fold(
        [
            new DeploymentPlaced("dep-1", [new PlacedPtu("eastus2", 1)], 0, "drain of eastus", At(1, 31, 23, 20)),
            Usage("dep-1", 120_000, At(1, 31, 23, 50)),
        ], first.Deployments, first.Hours);

        var eastus = first.Changes[PoolUtilization.IdOf(Pool.Id, January.Index)].Plus(second.Changes[PoolUtilization.IdOf(Pool.Id, January.Index)]);
        Assert.Equal(0, eastus.UsedHours["10-20%"]);
        Assert.Equal(1, eastus.UsedHours["90-100%"]); // counted where the hour began, never below zero anywhere
        var eastus2 = second.Changes[PoolUtilization.IdOf(East2, January.Index)];
        Assert.Empty(eastus2.UsedHours);
        Assert.Equal(120_000m, eastus2.Served); // tokens go where they were served
        Assert.Equal((1m, 0m), (eastus2.Deployed.Sum, eastus.Deployed.Sum)); // it holds its PTUs in eastus2 now
    }

    [Fact]
    public void A_pools_minute_slot_keeps_the_latest_minute_and_adds_only_to_it()
    {
        var minute = At(1, 31, 23, 10);
        var slot = PoolMinute.Add(null, Pool.Id, minute, 100);
        slot = PoolMinute.Add(slot, Pool.Id, minute, 50);
        Assert.Equal(150m, slot.WeightedTokens);

        var tenLater = minute.AddMinutes(PoolMinute.Slots);
        Assert.Equal(slot.Id, PoolMinute.IdOf(Pool.Id, tenLater));
        var taken = PoolMinute.Add(slot, Pool.Id, tenLater, 7);
        Assert.Equal((tenLater, 7m), (taken.Minute, taken.WeightedTokens));
        Assert.Same(taken, PoolMinute.Add(taken, Pool.Id, minute, 1_000)); // too old for the slot: the window has passed it
    }
}
