using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Throughput.Webhooks;

namespace Throughput.IntegrationTests;

/// <summary>The feed that turns the log into deliveries, on a page read twice.</summary>
[Collection(PlatformCollection.Name)]
public sealed class WebhookFeedTests(PlatformFixture platform)
{
    [Fact]
    public async Task A_page_read_again_leaves_a_delivered_delivery_delivered()
    {
        var store = platform.Services.GetRequiredService<IDocumentStore>();
        var (tenantId, customer) = await platform.NewTenantAsync();
        // Disabled, so that no sender attempts it; the feed writes deliveries for it all the same.
        var endpoint = new WebhookEndpoint("wh-feed-" + Guid.NewGuid().ToString("N")[..12], tenantId, "http://127.0.0.1:9/hook", ["deployment.purchased"], null,
            Enabled: false, "sealed", null, null, DateTimeOffset.UtcNow.AddMinutes(-1), 0);
        await using (var session = store.LightweightSession())
        {
            session.Store(endpoint);
            await session.SaveChangesAsync();
        }
        var deployment = await PlatformFixture.BuyAsync(customer, await platform.NewPoolAsync("gpt-4o", 10), 1);
        IReadOnlyList<JasperFx.Events.IEvent> events;
        await using (var query = store.QuerySession()) events = await query.Events.FetchStreamAsync(deployment);
        var purchased = events[0];
        var page = new EventRange(new ShardName("webhook-feed"), purchased.Sequence - 1, purchased.Sequence, null!) { Events = [purchased] };
        var id = WebhookDelivery.IdOf(WebhookEventTypes.MessageKey(purchased, "deployment.purchased"), endpoint.Id);

        try
        {
            await Feed(page);
            WebhookDelivery delivery;
            await using (var session = store.LightweightSession())
            {
                delivery = (await session.LoadAsync<WebhookDelivery>(id))!;
                Assert.Equal(DeliveryStatus.Pending, delivery.Status);
                session.Store(delivery with { Status = DeliveryStatus.Delivered });
                await session.SaveChangesAsync();
            }

            await Feed(page);
            await using var check = store.QuerySession();
            Assert.Equal(DeliveryStatus.Delivered, (await check.LoadAsync<WebhookDelivery>(id))!.Status);
        }
        finally
        {
            await using var cleanup = store.LightweightSession();
            cleanup.Delete<WebhookDelivery>(id);
            cleanup.Delete(endpoint);
            await cleanup.SaveChangesAsync();
        }

        async Task Feed(EventRange range)
        {
            await using var session = store.LightweightSession();
            await new WebhookFeed().ProcessEventsAsync(range, null!, session, CancellationToken.None);
            await session.SaveChangesAsync();
        }
    }
}
