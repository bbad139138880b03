using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;

namespace Throughput.IntegrationTests;

/// <summary>
/// Alerts and the spillover cap through the real host, its metering and its webhook sender, with the clock set by the test.
/// gpt-4o in USD: spilled output 10.00 per 1M tokens, so 10,000 spilled output tokens cost 0.10.
/// </summary>
[Collection(InvoicingCollection.Name)]
public sealed class AlertTests(InvoicingFixture platform)
{
    static DateTimeOffset At(int month, int day, int hour = 0, int minute = 0) => new(2032, month, day, hour, minute, 0, TimeSpan.Zero);

    static MeteringRecord Spilled(string deployment, long output, DateTimeOffset finishedAt) =>
        new(Guid.NewGuid().ToString("N"), deployment, "q", 0, 0, output, true, 0, finishedAt.AddSeconds(-3), finishedAt);

    static async Task<JsonElement> Body(HttpResponseMessage response) => await response.Content.ReadFromJsonAsync<JsonElement>();

    [Fact]
    public async Task A_spend_alert_fires_once_per_crossing_signed_and_a_cap_stops_spillover_billing_until_the_next_month()
    {
        await using var receiver = WebhookReceiver.Start(platform.Clock.GetUtcNow);
        var (_, customer) = await platform.NewTenantAsync();
        // Registered on the real clock: the feed sends an endpoint the events logged (at the database's time) after it was registered.
        platform.Clock.Set(DateTimeOffset.UtcNow);
        var endpoint = await Body((await customer.PostAsJsonAsync("/v1/webhooks/endpoints",
            new { url = receiver.Url("alerts"), eventTypes = new[] { "usage.alert_crossed", "spend.alert_crossed" } })).EnsureSuccessStatusCode());
        platform.Clock.Set(At(3, 10, 9));
        var (_, stranger) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var node = await platform.NewServingNodeAsync(region);
        var nodeClient = await platform.ServingNodeClientAsync(node);
        var bought = await customer.PostAsJsonAsync("/v1/deployments", new { name = "chat", model = "gpt-4o", region, type = "Global", ptu = 1, spillover = true });
        var deployment = (await Body(bought.EnsureSuccessStatusCode())).GetProperty("id").GetString()!;
        var secret = endpoint.GetProperty("secret").GetString()!;

        // Refused, the field named: a utilization above 10, a cap on something that is not spend, another tenant's deployment.
        async Task Refused(object alert, HttpStatusCode status, string field)
        {
            var refused = await customer.PostAsJsonAsync("/v1/alerts", alert);
            Assert.Equal(status, refused.StatusCode);
            Assert.True((await Body(refused)).GetProperty("errors").TryGetProperty(field, out _), field);
        }
        await Refused(new { metric = "Utilization", threshold = 20 }, HttpStatusCode.BadRequest, "threshold");
        await Refused(new { metric = "Utilization", threshold = 0.8, capsSpillover = true }, HttpStatusCode.BadRequest, "capsSpillover");
        await Refused(new { metric = "SpilloverSpend", threshold = 1, deploymentId = "dep-not-yours" }, HttpStatusCode.UnprocessableEntity, "deploymentId");

        var warning = (await Body((await customer.PostAsJsonAsync("/v1/alerts", new { metric = "SpilloverSpend", threshold = 0.50, name = "half" })).EnsureSuccessStatusCode()))
            .GetProperty("id").GetString()!;
        var cap = (await Body((await customer.PostAsJsonAsync("/v1/alerts", new { metric = "SpilloverSpend", threshold = 1.00, deploymentId = deployment, capsSpillover = true }))
            .EnsureSuccessStatusCode())).GetProperty("id").GetString()!;
        Assert.Equal(HttpStatusCode.NotFound, (await stranger.GetAsync($"/v1/alerts/{cap}")).StatusCode);
        Assert.Empty((await stranger.GetFromJsonAsync<JsonElement>("/v1/alerts")).EnumerateArray());

        async Task<JsonElement> AlertWhen(string id, Func<JsonElement, bool> until) =>
            await Eventually.Until(async () => await customer.GetFromJsonAsync<JsonElement>($"/v1/alerts/{id}"), until);

        // 0.30, then 0.60: the warning crosses once; 0.70 changes nothing; 1.10 reaches the cap.
        platform.Clock.Set(At(3, 10, 10));
        await platform.PublishAsync(node, Spilled(deployment, 30_000, At(3, 10, 9, 50)));
        await platform.PublishAsync(node, Spilled(deployment, 30_000, At(3, 10, 9, 51)));
        await AlertWhen(warning, a => a.GetProperty("crossedIn").GetString() == "2032-03");
        await platform.PublishAsync(node, Spilled(deployment, 10_000, At(3, 10, 9, 52)));
        await platform.PublishAsync(node, Spilled(deployment, 40_000, At(3, 10, 9, 53)));
        var capped = await AlertWhen(cap, a => a.GetProperty("crossedIn").GetString() == "2032-03");
        Assert.Equal(1.10m, capped.GetProperty("lastCrossedValue").GetDecimal());

        // Serving nodes are told spillover is off; spilled records past the cap are quarantined, and not billed.
        await Eventually.Until(async () => await nodeClient.GetFromJsonAsync<JsonElement>($"/v1/admission/{deployment}"), a => !a.GetProperty("spillover").GetBoolean());
        await platform.PublishAsync(node, Spilled(deployment, 20_000, At(3, 10, 9, 54)));
        using var op = platform.Operator();
        await Eventually.Until(async () => await op.GetFromJsonAsync<JsonElement>($"/v1/operator/quarantine?reason=SpilloverCapReached&producerId={node}"),
            q => q.GetArrayLength() == 1);
        var march = await Eventually.Until(async () => await customer.GetFromJsonAsync<JsonElement>("/v1/invoices/draft?month=2032-03"),
            d => d.GetProperty("lines").EnumerateArray().Any(l => l.GetProperty("kind").GetString() == "SpilloverAboveCap"));
        // Metered and billed: 110,000 spilled output tokens × 10.00 / 1M = 1.10 (the batch that crossed is billed whole; the
        // 20,000 past the cap are not on it). Above the 1.00 cap: 1.10 − 1.00 = 0.10, not billed. The month's spillover: 1.00.
        var spillover = march.GetProperty("lines").EnumerateArray()
            .Where(l => l.GetProperty("kind").GetString() is "Spillover" or "SpilloverAboveCap")
            .Select(l => (l.GetProperty("kind").GetString()!, l.GetProperty("deploymentId").GetString()!, l.GetProperty("serviceMonth").GetString()!, l.GetProperty("amount").GetDecimal()))
            .ToList();
        Assert.Equal([("Spillover", deployment, "2032-03", 1.10m), ("SpilloverAboveCap", deployment, "2032-03", -0.10m)], spillover);
        Assert.Equal(1.00m, spillover.Sum(l => l.Item4));

        await receiver.ArrivedAsync("alerts", 2);

        // A new month: spend starts again from 0, spillover is on again, and the warning crosses again at 0.60.
        platform.Clock.Set(At(4, 1, 0, 10));
        await platform.PublishAsync(node, Spilled(deployment, 60_000, At(4, 1, 0, 5)));
        await AlertWhen(warning, a => a.GetProperty("crossedIn").GetString() == "2032-04");
        await Eventually.Until(async () => await nodeClient.GetFromJsonAsync<JsonElement>($"/v1/admission/{deployment}"), a => a.GetProperty("spillover").GetBoolean());
        Assert.Equal("2032-03", (await customer.GetFromJsonAsync<JsonElement>($"/v1/alerts/{cap}")).GetProperty("crossedIn").GetString());
        await Eventually.Until(async () => await customer.GetFromJsonAsync<JsonElement>("/v1/invoices/draft?month=2032-04"),
            d => d.GetProperty("lines").EnumerateArray().Any(l => l.GetProperty("kind").GetString() == "Spillover" && l.GetProperty("amount").GetDecimal() == 0.60m));

        // Once per crossing: the warning in March and in April, the cap in March; each signed, each id once.
        var arrivals = await receiver.ArrivedAsync("alerts", 3);
        // Each crossing has one delivery, and each arrived once.
        var deliveries = await customer.GetFromJsonAsync<JsonElement>($"/v1/webhooks/endpoints/{endpoint.GetProperty("id").GetString()}/deliveries");
        Assert.Equal(3, deliveries.GetArrayLength());
        Assert.Equal(3, arrivals.Count);
        Assert.All(arrivals, a => Assert.True(WebhookReceiver.Verifies(a, secret), $"signature of {a.Id}"));
        Assert.Equal(3, arrivals.Select(a => a.Id).Distinct().Count());
        Assert.All(arrivals, a => Assert.Equal("spend.alert_crossed", a.Type));
        Assert.Equal([(warning, "2032-03", 0.60m), (cap, "2032-03", 1.10m), (warning, "2032-04", 0.60m)],
            arrivals.Select(a => (a.Data.GetProperty("alertId").GetString()!, a.Data.GetProperty("month").GetString()!, a.Data.GetProperty("spend").GetDecimal()))
                .OrderBy(x => x.Item2, StringComparer.Ordinal).ThenBy(x => x.Item3));
    }

    [Fact]
    public async Task A_utilization_alert_fires_once_per_crossing_is_armed_again_below_its_threshold_and_fires_again()
    {
        await using var receiver = WebhookReceiver.Start(platform.Clock.GetUtcNow);
        var (_, customer) = await platform.NewTenantAsync();
        platform.Clock.Set(DateTimeOffset.UtcNow);
        var endpoint = await Body((await customer.PostAsJsonAsync("/v1/webhooks/endpoints",
            new { url = receiver.Url("utilization"), eventTypes = new[] { "usage.alert_crossed" } })).EnsureSuccessStatusCode());
        platform.Clock.Set(At(7, 10, 9));
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var node = await platform.NewServingNodeAsync(region);
        var bought = await customer.PostAsJsonAsync("/v1/deployments", new { name = "chat", model = "gpt-4o", region, type = "Global", ptu = 1 });
        var deployment = (await Body(bought.EnsureSuccessStatusCode())).GetProperty("id").GetString()!;
        var half = (await Body((await customer.PostAsJsonAsync("/v1/alerts", new { metric = "Utilization", threshold = 0.5, name = "half" })).EnsureSuccessStatusCode()))
            .GetProperty("id").GetString()!;
        async Task<JsonElement> AlertWhen(Func<JsonElement, bool> until) =>
            await Eventually.Until(async () => await customer.GetFromJsonAsync<JsonElement>($"/v1/alerts/{half}"), until);
        static MeteringRecord Served(string deployment, long output, DateTimeOffset finishedAt) =>
            new(Guid.NewGuid().ToString("N"), deployment, "q", 0, 0, output, false, 0, finishedAt.AddSeconds(-3), finishedAt);

        // gpt-4o: 2,500 weighted tokens a minute per PTU, output weighs 4. The watch begins with the first usage: 80,000
        // served over the 3 s it took, against 125 allowed.
        platform.Clock.Set(At(7, 10, 10));
        await platform.PublishAsync(node, Served(deployment, 20_000, At(7, 10, 9, 50)));
        Assert.Equal(640m, (await AlertWhen(a => a.GetProperty("crossedIn").GetString() == "2032-07")).GetProperty("lastCrossedValue").GetDecimal());
        await receiver.ArrivedAsync("utilization", 1); // before the clock jumps: see WebhookReceiver.ArrivedAsync
        // Two hours on, 4 more served against 300,125 allowed: 0.27, armed again.
        platform.Clock.Set(At(7, 10, 12));
        await platform.PublishAsync(node, Served(deployment, 1, At(7, 10, 11, 50)));
        await AlertWhen(a => a.GetProperty("crossedIn").ValueKind == JsonValueKind.Null);
        // A minute later 80,000 more: 160,004 of 302,625, 0.53, crossed again.
        await platform.PublishAsync(node, Served(deployment, 20_000, At(7, 10, 11, 51)));
        Assert.Equal(decimal.Round(160_004m / 302_625m, 6),
            (await AlertWhen(a => a.GetProperty("crossedIn").GetString() == "2032-07")).GetProperty("lastCrossedValue").GetDecimal());

        var arrivals = await receiver.ArrivedAsync("utilization", 2);
        var deliveries = await customer.GetFromJsonAsync<JsonElement>($"/v1/webhooks/endpoints/{endpoint.GetProperty("id").GetString()}/deliveries");
        Assert.Equal(2, deliveries.GetArrayLength());
        Assert.Equal(2, arrivals.Select(a => a.Id).Distinct().Count());
        Assert.All(arrivals, a => Assert.True(WebhookReceiver.Verifies(a, endpoint.GetProperty("secret").GetString()!), $"signature of {a.Id}"));
        Assert.All(arrivals, a => Assert.Equal(("usage.alert_crossed", half, "2032-07"), (a.Type, a.Data.GetProperty("alertId").GetString(), a.Data.GetProperty("month").GetString())));
    }

    [Fact]
    public async Task An_invoice_to_date_alert_fires_once_when_the_draft_reaches_it_with_one_delivery_and_again_the_next_month()
    {
        await using var receiver = WebhookReceiver.Start(platform.Clock.GetUtcNow);
        var (_, customer) = await platform.NewTenantAsync();
        platform.Clock.Set(DateTimeOffset.UtcNow);
        var endpoint = await Body((await customer.PostAsJsonAsync("/v1/webhooks/endpoints",
            new { url = receiver.Url("invoice"), eventTypes = new[] { "invoice.alert_crossed" } })).EnsureSuccessStatusCode());
        platform.Clock.Set(At(5, 1));
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var bought = await customer.PostAsJsonAsync("/v1/deployments", new { name = "chat", model = "gpt-4o", region, type = "Global", ptu = 1 });
        var deployment = (await Body(bought.EnsureSuccessStatusCode())).GetProperty("id").GetString()!;

        foreach (var (alert, field) in new (object, string)[] { (new { metric = "InvoiceToDate", threshold = 0 }, "threshold"), (new { metric = "InvoiceToDate", threshold = 5, capsSpillover = true }, "capsSpillover") })
        {
            var refused = await customer.PostAsJsonAsync("/v1/alerts", alert);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.True((await Body(refused)).GetProperty("errors").TryGetProperty(field, out _), field);
        }
        // The tenant's whole draft at 10.00, the deployment's lines at 20.00: gpt-4o, 1 PTU, 1.00 per PTU-hour.
        var tenantWide = (await Body((await customer.PostAsJsonAsync("/v1/alerts", new { metric = "InvoiceToDate", threshold = 10.00, name = "ten" })).EnsureSuccessStatusCode()))
            .GetProperty("id").GetString()!;
        var ofDeployment = (await Body((await customer.PostAsJsonAsync("/v1/alerts", new { metric = "InvoiceToDate", threshold = 20.00, deploymentId = deployment }))
            .EnsureSuccessStatusCode())).GetProperty("id").GetString()!;
        async Task<JsonElement> AlertWhen(string id, Func<JsonElement, bool> until) =>
            await Eventually.Until(async () => await customer.GetFromJsonAsync<JsonElement>($"/v1/alerts/{id}"), until);

        // Twelve hours in, the draft is 12.00: the tenant-wide alert crosses at what the draft says.
        platform.Clock.Set(At(5, 1, 12));
        var ten = await AlertWhen(tenantWide, a => a.GetProperty("crossedIn").GetString() == "2032-05");
        var draft = await customer.GetFromJsonAsync<JsonElement>("/v1/invoices/draft");
        Assert.Equal(12.00m, draft.GetProperty("total").GetDecimal());
        Assert.Equal(12.00m, ten.GetProperty("lastCrossedValue").GetDecimal());
        Assert.Null((await customer.GetFromJsonAsync<JsonElement>($"/v1/alerts/{ofDeployment}")).GetProperty("crossedIn").GetString());
        await receiver.ArrivedAsync("invoice", 1);

        // At 25.00 the deployment's alert crosses; the round that saw it saw the tenant-wide one still crossed, and left it.
        platform.Clock.Set(At(5, 2, 1));
        Assert.Equal(25.00m, (await AlertWhen(ofDeployment, a => a.GetProperty("crossedIn").GetString() == "2032-05")).GetProperty("lastCrossedValue").GetDecimal());
        Assert.Equal(12.00m, (await customer.GetFromJsonAsync<JsonElement>($"/v1/alerts/{tenantWide}")).GetProperty("lastCrossedValue").GetDecimal());
        await receiver.ArrivedAsync("invoice", 2);

        // June's draft starts from nothing: the tenant-wide alert is armed again, and crosses again at 10.00 or more.
        platform.Clock.Set(At(6, 1, 11));
        Assert.Equal(11.00m, (await AlertWhen(tenantWide, a => a.GetProperty("crossedIn").GetString() == "2032-06")).GetProperty("lastCrossedValue").GetDecimal());

        // One delivery per crossing, each arrived once, signed.
        var arrivals = await receiver.ArrivedAsync("invoice", 3);
        var deliveries = await customer.GetFromJsonAsync<JsonElement>($"/v1/webhooks/endpoints/{endpoint.GetProperty("id").GetString()}/deliveries");
        Assert.Equal(3, deliveries.GetArrayLength());
        Assert.Equal(3, arrivals.Count);
        Assert.Equal(3, arrivals.Select(a => a.Id).Distinct().Count());
        Assert.All(arrivals, a => Assert.True(WebhookReceiver.Verifies(a, endpoint.GetProperty("secret").GetString()!), $"signature of {a.Id}"));
        Assert.All(arrivals, a => Assert.Equal("invoice.alert_crossed", a.Type));
        Assert.Equal([(tenantWide, "2032-05", 12.00m, "USD"), (ofDeployment, "2032-05", 25.00m, "USD"), (tenantWide, "2032-06", 11.00m, "USD")],
            arrivals.Select(a => (a.Data.GetProperty("alertId").GetString()!, a.Data.GetProperty("month").GetString()!, a.Data.GetProperty("invoiceToDate").GetDecimal(),
                a.Data.GetProperty("currency").GetString()!)).OrderBy(x => x.Item2, StringComparer.Ordinal).ThenBy(x => x.Item3));
    }
}
