using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Throughput.IntegrationTests;

[Collection(InvoicingCollection.Name)]
public sealed class NotificationApiTests(InvoicingFixture platform)
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

    [Fact]
    public async Task Registering_an_endpoint_or_setting_an_alert_again_with_its_idempotency_key_returns_the_first_and_another_body_is_refused()
    {
        await using var receiver = WebhookReceiver.Start(platform.Clock.GetUtcNow);
        var (_, customer) = await platform.NewTenantAsync();
        var (_, other) = await platform.NewTenantAsync();
        async Task<(HttpStatusCode, JsonElement)> Post(HttpClient client, string path, object body, string key)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
            request.Headers.Add("Idempotency-Key", key);
            using var answer = await client.SendAsync(request);
            return (answer.StatusCode, await answer.Content.ReadFromJsonAsync<JsonElement>());
        }
        var endpoint = new { url = receiver.Url("again"), eventTypes = new[] { "deployment.purchased" } };
        var (created, first) = await Post(customer, "/v1/webhooks/endpoints", endpoint, "register-1");
        var (repeated, second) = await Post(customer, "/v1/webhooks/endpoints", endpoint, "register-1");
        Assert.Equal((HttpStatusCode.Created, HttpStatusCode.Created), (created, repeated));
        Assert.Equal((first.GetProperty("id").GetString(), first.GetProperty("secret").GetString()), (second.GetProperty("id").GetString(), second.GetProperty("secret").GetString()));
        Assert.Single((await customer.GetFromJsonAsync<JsonElement>("/v1/webhooks/endpoints")).EnumerateArray());
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await Post(customer, "/v1/webhooks/endpoints", endpoint with { url = receiver.Url("elsewhere") }, "register-1")).Item1);
        // Another tenant's same key is its own.
        var (theirs, theirEndpoint) = await Post(other, "/v1/webhooks/endpoints", endpoint, "register-1");
        Assert.Equal(HttpStatusCode.Created, theirs);
        Assert.NotEqual(first.GetProperty("id").GetString(), theirEndpoint.GetProperty("id").GetString());

        var alert = new { metric = "SpilloverSpend", threshold = 5.0 };
        var (set, alertOnce) = await Post(customer, "/v1/alerts", alert, "alert-1");
        var (setAgain, alertTwice) = await Post(customer, "/v1/alerts", alert, "alert-1");
        Assert.Equal((HttpStatusCode.Created, HttpStatusCode.Created), (set, setAgain));
        Assert.Equal(alertOnce.GetProperty("id").GetString(), alertTwice.GetProperty("id").GetString());
        Assert.Single((await customer.GetFromJsonAsync<JsonElement>("/v1/alerts")).EnumerateArray());
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await Post(customer, "/v1/alerts", alert with { threshold = 6.0 }, "alert-1")).Item1);
    }
}
