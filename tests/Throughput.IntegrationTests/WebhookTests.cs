using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Throughput.IntegrationTests;

/// <summary>
/// A customer's receiver on loopback, through a real host process: every subscribed event arrives once by id, signed, in
/// order per deployment, after a minute or more of the receiver answering 503 and a SIGKILL of the sending host in between.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class WebhookTests(PlatformFixture platform)
{
    /// <summary>Waits that double from 1 s and then stay at 16 s: about two and a half minutes in all, so the test's minute-long outage fits.</summary>
    const string TestSchedule = "00:00:01,00:00:02,00:00:04,00:00:08,00:00:16,00:00:16,00:00:16,00:00:16,00:00:16,00:00:16";

    static readonly TimeSpan Outage = TimeSpan.FromMinutes(1);

    [Fact]
    public async Task A_receiver_down_for_a_minute_across_a_host_kill_gets_every_event_once_signed_and_in_order_per_deployment()
    {
        await using var receiver = WebhookReceiver.Start();
        await using var host = SendingHost(timeout: null);
        await host.StartAsync();
        var (tenantId, fixtureCustomer) = await platform.NewTenantAsync();
        using var customer = host.ClientAs(fixtureCustomer);
        using var op = new HttpClient { BaseAddress = host.Address };
        op.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", PlatformFixture.OperatorKey);

        // Refused with the field named: a host the operator did not allow, an event type that does not exist.
        var refused = await customer.PostAsJsonAsync("/v1/webhooks/endpoints", new { url = "http://10.1.2.3/hook", eventTypes = new[] { "deployment.exploded" } });
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var errors = (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors");
        Assert.True(errors.TryGetProperty("url", out _) && errors.TryGetProperty("eventTypes[0]", out _), errors.ToString());

        var events = new[] { "deployment.purchased", "deployment.resized", "deployment.released" };
        var endpoint = await RegisterAsync(customer, receiver.Url("tenant"), events);
        var platformWide = await RegisterAsync(op, receiver.Url("operator"), ["deployment.purchased"]);
        var secret = endpoint.GetProperty("secret").GetString()!;
        var endpointId = endpoint.GetProperty("id").GetString()!;
        Assert.Single((await customer.GetFromJsonAsync<JsonElement>("/v1/webhooks/endpoints")).EnumerateArray());
        Assert.Equal(HttpStatusCode.NotFound, (await fixtureCustomer.GetAsync($"/v1/webhooks/endpoints/{platformWide.GetProperty("id").GetString()}")).StatusCode);

        receiver.Down = true;
        var outageStarted = DateTime.UtcNow;
        var region = await platform.NewPoolAsync("gpt-4o-mini", 1000);
        var deployments = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            var id = await PlatformFixture.BuyAsync(fixtureCustomer, region, 10, "gpt-4o-mini");
            (await fixtureCustomer.SendAsync(IfMatch($"/v1/deployments/{id}/resize", "\"1\"", new { ptu = 20 }))).EnsureSuccessStatusCode();
            (await fixtureCustomer.SendAsync(IfMatch($"/v1/deployments/{id}/release", "\"2\"", null))).EnsureSuccessStatusCode();
            deployments.Add(id);
        }

        // The receiver refuses; the host retries, then dies mid-outage with deliveries pending, and a new process carries on.
        // The feed is the schema's daemon, which the suite's other tests keep busy: on a loaded machine the first attempts
        // have come 30 s and more after the events, so the wait is long.
        try { await Eventually.Until(() => receiver.Refused("tenant"), n => n >= 3, TimeSpan.FromSeconds(180)); }
        catch (TimeoutException e) { throw new InvalidOperationException("The host's warnings:\n" + host.Output, e); }
        host.Kill();
        await Task.Delay(TimeSpan.FromSeconds(2));
        await host.StartAsync();
        var left = Outage - (DateTime.UtcNow - outageStarted);
        if (left > TimeSpan.Zero) await Task.Delay(left);
        // The log's waits are asserted to grow below: on a loaded machine the first attempts can come late, so the outage
        // lasts until one message has been refused four times (three waits), a minute at least.
        await Eventually.Until(() => receiver.MostRefusalsOfOne("tenant"), n => n >= 4, TimeSpan.FromSeconds(120));
        receiver.Down = false;

        var expected = deployments.Count * events.Length;
        await receiver.ArrivedAsync("tenant", expected, TimeSpan.FromSeconds(120));
        await receiver.ArrivedAsync("operator", deployments.Count, TimeSpan.FromSeconds(60));
        var accepted = receiver.Accepted("tenant");
        Assert.Equal(expected, accepted.Count);
        Assert.Equal(expected, accepted.Select(a => a.Id).Distinct().Count());
        Assert.All(accepted, a => Assert.True(WebhookReceiver.Verifies(a, secret), $"signature of {a.Id}"));
        foreach (var deployment in deployments)
        {
            var types = accepted.Where(a => a.Data.GetProperty("deploymentId").GetString() == deployment).Select(a => a.Type).ToList();
            Assert.Equal(events, types);
        }
        Assert.All(accepted, a => Assert.Equal(tenantId, a.TenantId));
        var platformWideIds = receiver.Accepted("operator").Where(a => deployments.Contains(a.Data.GetProperty("deploymentId").GetString()!)).Select(a => a.Id).ToList();
        Assert.Equal(deployments.Count, platformWideIds.Distinct().Count());
        Assert.Equal(platformWideIds.Count, platformWideIds.Distinct().Count());

        // The delivery log shows the retries, and their waits growing.
        var log = await customer.GetFromJsonAsync<JsonElement>($"/v1/webhooks/endpoints/{endpointId}/deliveries");
        Assert.Equal(expected, log.GetArrayLength());
        Assert.All(log.EnumerateArray(), d => Assert.Equal("Delivered", d.GetProperty("status").GetString()));
        var first = log.EnumerateArray().MaxBy(d => d.GetProperty("attempts").GetArrayLength());
        var waits = first.GetProperty("attempts").EnumerateArray().Where(a => a.GetProperty("retryIn").ValueKind == JsonValueKind.String)
            .Select(a => TimeSpan.Parse(a.GetProperty("retryIn").GetString()!, CultureInfo.InvariantCulture)).ToList();
        Assert.True(waits.Count >= 3, first.ToString());
        Assert.True(waits.Take(4).Zip(waits.Skip(1).Take(3)).All(p => p.First < p.Second), first.ToString());
        Assert.Equal(503, first.GetProperty("attempts")[0].GetProperty("statusCode").GetInt32());

        // Rotated: both secrets sign for the grace period. Disabled: events wait, unattempted, until enabled.
        var rotated = await (await customer.PostAsync($"/v1/webhooks/endpoints/{endpointId}/rotate-secret", null)).EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>();
        var newSecret = rotated.GetProperty("secret").GetString()!;
        (await customer.PostAsync($"/v1/webhooks/endpoints/{endpointId}/disable", null)).EnsureSuccessStatusCode();
        var later = await PlatformFixture.BuyAsync(fixtureCustomer, region, 10, "gpt-4o-mini");
        await Eventually.Until(() => customer.GetFromJsonAsync<JsonElement>($"/v1/webhooks/endpoints/{endpointId}/deliveries"),
            l => l.GetArrayLength() == expected + 1, TimeSpan.FromSeconds(60));
        var held = (await customer.GetFromJsonAsync<JsonElement>($"/v1/webhooks/endpoints/{endpointId}/deliveries"))[0];
        Assert.Equal(("Pending", 0), (held.GetProperty("status").GetString(), held.GetProperty("attempts").GetArrayLength()));
        Assert.Equal(expected, receiver.Accepted("tenant").Count);
        (await customer.PostAsync($"/v1/webhooks/endpoints/{endpointId}/enable", null)).EnsureSuccessStatusCode();
        var delivered = (await Eventually.Until(() => Task.FromResult(receiver.Accepted("tenant")), a => a.Count == expected + 1, TimeSpan.FromSeconds(30)))[^1];
        Assert.Equal(later, delivered.Data.GetProperty("deploymentId").GetString());
        Assert.True(WebhookReceiver.Verifies(delivered, newSecret) && WebhookReceiver.Verifies(delivered, secret));

        // The platform-wide endpoint hears every purchase in the suite's schema: once its receiver is gone it would collect them.
        (await op.PostAsync($"/v1/webhooks/endpoints/{platformWide.GetProperty("id").GetString()}/disable", null)).EnsureSuccessStatusCode();
    }

    [Fact]
    public async Task A_receiver_that_never_answers_holds_up_its_own_endpoint_only()
    {
        await using var receiver = WebhookReceiver.Start();
        receiver.Hanging = "slow";
        // An attempt waits five minutes for its answer: longer than this test, so the slow endpoint's attempts stay open throughout.
        await using var host = SendingHost(timeout: "00:05:00");
        await host.StartAsync();
        var (_, slowCustomer) = await platform.NewTenantAsync();
        var (_, fastCustomer) = await platform.NewTenantAsync();
        using (var slow = host.ClientAs(slowCustomer)) await RegisterAsync(slow, receiver.Url("slow"), ["deployment.purchased"]);
        using (var fastOwner = host.ClientAs(fastCustomer)) await RegisterAsync(fastOwner, receiver.Url("fast"), ["deployment.purchased"]);
        var region = await platform.NewPoolAsync("gpt-4o-mini", 1000);

        // Six deployments, six order keys: more than the four attempts one endpoint may hold (docs/webhooks.md).
        for (var i = 0; i < 6; i++) await PlatformFixture.BuyAsync(slowCustomer, region, 1, "gpt-4o-mini");
        try { await Eventually.Until(() => Task.FromResult(receiver.Open("slow")), n => n >= 1, TimeSpan.FromSeconds(180)); }
        catch (TimeoutException e) { throw new InvalidOperationException("The host's warnings:\n" + host.Output, e); }
        var fast = await PlatformFixture.BuyAsync(fastCustomer, region, 1, "gpt-4o-mini");

        // The feed is the schema's daemon, which the suite keeps busy: the wait is long, and still shorter than the slow attempts.
        var delivered = await Eventually.Until(() => Task.FromResult(receiver.Accepted("fast")), a => a.Count == 1, TimeSpan.FromSeconds(180));
        Assert.Equal(fast, delivered[0].Data.GetProperty("deploymentId").GetString());
        Assert.InRange(receiver.Open("slow"), 1, 4);
    }

    /// <summary>A host of its own that sends webhooks to loopback, on the test schedule (and the given attempt timeout).</summary>
    static PlatformProcess SendingHost(string? timeout)
    {
        var environment = new Dictionary<string, string>
        {
            ["Webhooks__AllowedHosts"] = "127.0.0.1",
            ["Webhooks__AllowHttp"] = "true",
            ["Webhooks__SecretKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
            ["Webhooks__RetrySchedule"] = TestSchedule,
            ["Webhooks__AllowShortRetrySchedule"] = "true",
            ["Webhooks__PollInterval"] = "00:00:00.200",
        };
        if (timeout is not null) environment["Webhooks__Timeout"] = timeout;
        return new PlatformProcess($"tests.webhooks.{Guid.NewGuid():N}"[..26], partitions: 1, roles: "Api,Daemon", environment: environment);
    }

    static async Task<JsonElement> RegisterAsync(HttpClient client, string url, string[] eventTypes)
    {
        var created = await client.PostAsJsonAsync("/v1/webhooks/endpoints", new { url, eventTypes });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        return await created.Content.ReadFromJsonAsync<JsonElement>();
    }

    static HttpRequestMessage IfMatch(string url, string etag, object? body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = body is null ? null : JsonContent.Create(body) };
        request.Headers.IfMatch.Add(EntityTagHeaderValue.Parse(etag));
        return request;
    }
}
