using JasperFx.Events;
using Marten;
using Throughput.Alerts;
using Throughput.Catalog;
using Throughput.Deployments;

namespace Throughput.IntegrationTests;

/// <summary>
/// The usage watch folds each usage event into month to date once, however often the read models' pass hands it the
/// same page: a retried batch, a new version of the read models replaying the log, or the position the watch reached
/// when it was a subscription of its own. In a schema of its own, with pages made by the test.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class AlertWatchTests(PlatformFixture platform)
{
    const string Schema = "throughput_alert_watch_tests";
    const string Tenant = "ten-watch";
    const string DeploymentId = "dep-watch";

    [Fact]
    public async Task The_watch_folds_each_usage_event_once_and_starts_where_its_subscription_stopped()
    {
        var (_, store) = await platform.OwnSchemaAsync(Schema);
        using var owned = store;
        var now = DateTimeOffset.UtcNow;
        // Spilled output at 10.00 per 1M tokens: 60,000 tokens cost 0.60; the alert is at 1.00.
        var prices = new PriceList(2m, 0, 0, 2.5m, 1.25m, 10m);
        await using (var session = store.LightweightSession())
        {
            session.Events.StartStream<Deployment>(DeploymentId,
                new DeploymentCreated(DeploymentId, Tenant, "chat", "gpt-4o", "eastus", DeploymentType.Global, 1, 2_500, 4, 1, 60, true, "USD", prices, now.AddDays(-1)));
            session.Events.StartStream<Alert>("alr-watch", new AlertSet("alr-watch", Tenant, null, AlertMetric.SpilloverSpend, 1.00m, false, null, now.AddHours(-1)));
            await session.SaveChangesAsync();
        }
        // The subscription the watch was before had folded up to sequence 10.
        await using (var session = store.LightweightSession())
        {
            session.QueueSqlCommand($"insert into {Schema}.mt_event_progression (name, last_seq_id) values ('alert-watch:All', 10)");
            await session.SaveChangesAsync();
        }

        var watch = new AlertWatch();
        async Task<(decimal? Spend, long? Position, string? CrossedIn)> Apply(params IEvent[] page)
        {
            await using (var session = store.LightweightSession())
            {
                await watch.ApplyAsync(session, page, CancellationToken.None);
                await session.SaveChangesAsync();
            }
            await using var query = store.QuerySession();
            var month = await query.LoadAsync<MonthToDate>(Tenant);
            var position = await query.LoadAsync<AlertWatchProgress>("alert-watch");
            var alert = await query.LoadAsync<Alert>("alr-watch");
            return (month?.ValueOf(AlertMetric.SpilloverSpend, null), position?.Sequence, alert!.CrossedIn);
        }

        // At or below the subscription's position: folded already, so not again.
        Assert.Equal((null, null, null), await Apply(Usage(9, now), Usage(10, now)));
        var page = Usage(11, now);
        Assert.Equal((0.60m, 11L, null), await Apply(page));
        // The same page again (a retried batch, a replay of the log): nothing moves, the alert does not cross at 1.20.
        Assert.Equal((0.60m, 11L, null), await Apply(page));
        Assert.Equal((0.60m, 11L, null), await Apply(Usage(10, now), page));
        // The next event crosses it.
        Assert.Equal((1.20m, 12L, Deployment.MonthOf(now.AddSeconds(-1))), await Apply(page, Usage(12, now)));
    }

    static Event<UsageMetered> Usage(long sequence, DateTimeOffset at) => new(new UsageMetered(DeploymentId, Tenant, [],
        new TokenCounts(1, 0, 0, 60_000, 1, 0, 0, 60_000), 240_000, at.AddSeconds(-2), at.AddSeconds(-1), 0, 0, 2_500, at))
    {
        Sequence = sequence,
        Timestamp = at,
    };
}
