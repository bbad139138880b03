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
            // The host's own feed writes the delivery first, with its progress: it is then done with this page.
            var delivery = await Eventually.Until(async () =>
            {
                await using var query = store.QuerySession();
                return await query.LoadAsync<WebhookDelivery>(id);
            }, d => d is not null, TimeSpan.FromSeconds(120));
            Assert.Equal(DeliveryStatus.Pending, delivery!.Status);
            await using (var session = store.LightweightSession())
            {
                session.Store(delivery with { Status = DeliveryStatus.Delivered });
                await session.SaveChangesAsync();
            }

            // The same page read again, as by a leader that replaced the host's mid-page.
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
