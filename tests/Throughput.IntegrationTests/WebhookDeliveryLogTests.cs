using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Throughput.IntegrationTests;

[Collection(InvoicingCollection.Name)]
public sealed class WebhookDeliveryLogTests(InvoicingFixture platform)
{
    [Fact]
    public async Task The_delivery_log_pages_newest_first_by_a_cursor_and_filters_by_status()
    {
        await using var receiver = WebhookReceiver.Start(platform.Clock.GetUtcNow);
        var (_, customer) = await platform.NewTenantAsync();
        platform.Clock.Set(DateTimeOffset.UtcNow);
        var endpoint = await (await customer.PostAsJsonAsync("/v1/webhooks/endpoints",
            new { url = receiver.Url("log"), eventTypes = new[] { "deployment.purchased" } })).EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>();
        var log = $"/v1/webhooks/endpoints/{endpoint.GetProperty("id").GetString()}/deliveries";
        var region = await platform.NewPoolAsync("gpt-4o-mini", 10);
        List<string> bought = [];
        for (var i = 0; i < 3; i++) bought.Add(await PlatformFixture.BuyAsync(customer, region, 1, "gpt-4o-mini"));
        platform.Clock.Set(DateTimeOffset.UtcNow.AddSeconds(1)); // the test's clock stands still: deliveries fall due when it moves past them
        var all = await Eventually.Until(async () => await customer.GetFromJsonAsync<JsonElement>(log), d => d.GetArrayLength() == 3 && d.EnumerateArray().All(x => x.GetProperty("status").GetString() == "Delivered"));
        Assert.Equal(3, (await customer.GetFromJsonAsync<JsonElement>($"{log}?status=Delivered")).GetArrayLength());

        var first = await customer.GetAsync($"{log}?limit=2");
        var page = await first.EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>();
        var next = first.Headers.GetValues("Link").Single();
        Assert.Matches("^<.*before=\\d+.*>; rel=\"next\"$", next);
        var rest = await customer.GetAsync(next[1..next.IndexOf('>')]);
        var second = await rest.EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>();
        Assert.False(rest.Headers.Contains("Link"));
        // Newest event first: the purchases in reverse order, each once.
        Assert.Equal(Enumerable.Reverse(bought), page.EnumerateArray().Concat(second.EnumerateArray()).Select(d => d.GetProperty("orderKey").GetString()));
        Assert.Empty((await customer.GetFromJsonAsync<JsonElement>($"{log}?status=Failed")).EnumerateArray());

        foreach (var (query, field) in new[] { ("limit=0", "limit"), ("limit=1001", "limit") })
        {
            var refused = await customer.GetAsync($"{log}?{query}");
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.True((await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors").TryGetProperty(field, out _), query);
        }
        var badStatus = await customer.GetAsync($"{log}?status=Lost");
        Assert.Equal(HttpStatusCode.BadRequest, badStatus.StatusCode);
        Assert.Contains("status", await badStatus.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
