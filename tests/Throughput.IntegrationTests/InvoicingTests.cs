using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Marten;
using JasperFx.Events.Daemon;
using Marten.Events;
using Microsoft.Extensions.DependencyInjection;
using Throughput.Configuration;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Hosting;
using Throughput.Store;
using Throughput.Invoicing;

namespace Throughput.IntegrationTests;

/// <summary>
/// Invoicing through the real host on real PostgreSQL and RabbitMQ, with the clock set by the test. gpt-4o in USD:
/// 1.00 per PTU-hour, spillover per 1M tokens 2.50 input, 1.25 cached, 10.00 output; in EUR 0.92 per PTU-hour.
/// </summary>
[Collection(InvoicingCollection.Name)]
public sealed class InvoicingTests(InvoicingFixture platform)
{
    static DateTimeOffset At(int year, int month, int day, int hour = 0, int minute = 0, int second = 0) => new(year, month, day, hour, minute, second, TimeSpan.Zero);

    static async Task<JsonElement> Body(HttpResponseMessage response) => await response.Content.ReadFromJsonAsync<JsonElement>();

    /// <summary>A draft's or invoice's lines other than provisioned PTUs, by amount (deployments bought at the same moment are listed in no particular order).</summary>
    static (string?, decimal)[] Spill(JsonElement document) => [.. document.GetProperty("lines").EnumerateArray()
        .Where(l => l.GetProperty("kind").GetString() != "Provisioned")
        .Select(l => (l.GetProperty("deploymentId").GetString(), l.GetProperty("amount").GetDecimal())).OrderBy(l => l.Item2)];

    static decimal[] Amounts(JsonElement document) => [.. document.GetProperty("lines").EnumerateArray().Select(l => l.GetProperty("amount").GetDecimal())];

    static async Task<string> BuyAsync(HttpClient customer, string region, decimal ptu, string name = "docs")
    {
        var created = await customer.PostAsJsonAsync("/v1/deployments", new { name, model = "gpt-4o", region, type = "Global", ptu, spillover = true });
        created.EnsureSuccessStatusCode();
        return (await Body(created)).GetProperty("id").GetString()!;
    }

    static async Task ResizeAsync(HttpClient customer, string deploymentId, decimal ptu, int etag)
    {
        var resize = new HttpRequestMessage(HttpMethod.Post, $"/v1/deployments/{deploymentId}/resize") { Content = JsonContent.Create(new { ptu }) };
        resize.Headers.IfMatch.Add(new EntityTagHeaderValue($"\"{etag}\""));
        (await customer.SendAsync(resize)).EnsureSuccessStatusCode();
    }

    static MeteringRecord Record(string deployment, long prompt, long cached, long output, bool spilled, DateTimeOffset finishedAt) =>
        new(Guid.NewGuid().ToString("N"), deployment, "q", prompt, cached, output, spilled, 0, finishedAt.AddSeconds(-3), finishedAt);

    static Task<JsonElement> DraftWhen(HttpClient customer, string month, Func<JsonElement, bool> until) =>
        Eventually.Until(async () =>
        {
            var response = await customer.GetAsync($"/v1/invoices/draft?month={month}");
            return response.StatusCode == HttpStatusCode.OK ? await Body(response) : default;
        }, d => d.ValueKind == JsonValueKind.Object && until(d));

    [Fact]
    public async Task Accrued_revenue_of_a_month_is_its_open_drafts_summed_per_currency_and_an_issued_invoice_leaves_it()
    {
        // It sums every tenant's draft, this collection's other tests' too: what these tenants add is the difference.
        var finance = await platform.FinanceAsync();
        async Task<Dictionary<string, decimal>> AccruedAsync()
        {
            Assert.True(await Drafts.WaitUntilCurrentAsync(platform.Store, TimeSpan.FromSeconds(60), CancellationToken.None));
            return (await Body(await finance.GetAsync("/v1/finance/accrued?month=2034-05"))).EnumerateArray()
                .ToDictionary(a => a.GetProperty("currency").GetString()!, a => a.GetProperty("accrued").GetDecimal());
        }
        platform.Clock.Set(At(2034, 5, 20));
        var before = await AccruedAsync();

        platform.Clock.Set(At(2034, 5, 10));
        var (usdTenant, usd) = await platform.NewTenantAsync();
        var (_, eur) = await platform.NewTenantAsync("EUR");
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        await BuyAsync(usd, region, 2);
        await BuyAsync(eur, region, 1);
        platform.Clock.Set(At(2034, 5, 20));
        var after = await AccruedAsync();
        // May 10 → 20 = 240 h, no event between: 2 PTU × 1.00 = 480.00 USD; 1 PTU × 0.92 = 220.80 EUR
        Assert.Equal((480.00m, 220.80m), (after["USD"] - before.GetValueOrDefault("USD"), after["EUR"] - before.GetValueOrDefault("EUR")));
        Assert.Equal(480.00m, (await Body(await usd.GetAsync("/v1/invoices/draft?month=2034-05"))).GetProperty("total").GetDecimal());

        // June 3rd: May is over; issuing the USD tenant's invoice takes its whole May out of the accrued revenue:
        // May 10 → June 1 = 528 h × 2 PTU × 1.00 = 1,056.00
        platform.Clock.Set(At(2034, 6, 3));
        var ended = await AccruedAsync();
        (await finance.PostAsync($"/v1/finance/invoices/{usdTenant}/2034-05/issue", null)).EnsureSuccessStatusCode();
        var issued = await AccruedAsync();
        Assert.Equal(1056.00m, ended["USD"] - issued.GetValueOrDefault("USD"));
        Assert.Equal(ended["EUR"], issued["EUR"]);
        Assert.Equal(HttpStatusCode.BadRequest, (await finance.GetAsync("/v1/finance/accrued?month=May")).StatusCode);
    }

    [Fact]
    public async Task A_month_is_billed_issued_once_read_by_its_tenant_only_corrected_by_a_credit_note_and_late_usage_goes_to_the_next()
    {
        platform.Clock.Set(At(2030, 1, 31, 22));
        var (tenantId, customer) = await platform.NewTenantAsync();
        var (_, stranger) = await platform.NewTenantAsync();
        var finance = await platform.FinanceAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var node = await platform.NewServingNodeAsync(region);
        var deployment = await BuyAsync(customer, region, 1);
        platform.Clock.Set(At(2030, 1, 31, 23, 30));
        await ResizeAsync(customer, deployment, 2, etag: 1);

        platform.Clock.Set(At(2030, 2, 1, 0, 10));
        await platform.PublishAsync(node,
            Record(deployment, 400_000, 100_000, 20_000, spilled: true, At(2030, 1, 31, 23, 50)),
            Record(deployment, 5_000, 0, 1_000, spilled: false, At(2030, 1, 31, 23, 55)),
            Record(deployment, 0, 0, 10_000, spilled: true, At(2030, 2, 1, 0, 5)));

        var january = await DraftWhen(customer, "2030-01", d => d.GetProperty("lines").GetArrayLength() == 5);
        // 22:00 → 23:30 at 1 PTU = 1.5 PTU-h × 1.00 = 1.50; 23:30 → 24:00 at 2 PTU = 1.0 PTU-h = 1.00;
        // spilled input (400,000 − 100,000) × 2.50 / 1M = 0.75; cached 100,000 × 1.25 / 1M = 0.125 → 0.13; output 20,000 × 10 / 1M = 0.20
        Assert.Equal([1.50m, 1.00m, 0.75m, 0.13m, 0.20m], Amounts(january));
        Assert.Equal(3.58m, january.GetProperty("total").GetDecimal());
        // February is not over: its invoice cannot be issued yet
        Assert.Equal(HttpStatusCode.Conflict, (await finance.PostAsync($"/v1/finance/invoices/{tenantId}/2030-02/issue", null)).StatusCode);

        platform.Clock.Set(At(2030, 2, 3, 0, 0, 1));
        var issued = await finance.PostAsync($"/v1/finance/invoices/{tenantId}/2030-01/issue", null);
        Assert.Equal(HttpStatusCode.Created, issued.StatusCode);
        var invoice = await Body(issued);
        var invoiceId = invoice.GetProperty("id").GetString()!;
        Assert.Equal([1.50m, 1.00m, 0.75m, 0.13m, 0.20m], Amounts(invoice));
        Assert.Equal((3.58m, "USD"), (invoice.GetProperty("total").GetDecimal(), invoice.GetProperty("currency").GetString()));
        var again = await finance.PostAsync($"/v1/finance/invoices/{tenantId}/2030-01/issue", null);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal(invoice.GetProperty("number").GetInt64(), (await Body(again)).GetProperty("number").GetInt64());

        // the tenant reads its own; another tenant finds nothing
        var listed = await Body(await customer.GetAsync("/v1/invoices"));
        Assert.Equal([invoiceId], listed.EnumerateArray().Select(i => i.GetProperty("id").GetString()));
        var read = await customer.GetAsync($"/v1/invoices/{invoiceId}");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        var issuedBytes = await read.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.NotFound, (await stranger.GetAsync($"/v1/invoices/{invoiceId}")).StatusCode);
        Assert.Equal("application/problem+json", (await stranger.GetAsync($"/v1/invoices/{invoiceId}")).Content.Headers.ContentType!.MediaType);
        Assert.Empty((await Body(await stranger.GetAsync("/v1/invoices"))).EnumerateArray());
        Assert.Equal(HttpStatusCode.Forbidden, (await customer.GetAsync("/v1/finance/invoices?month=2030-01")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await customer.GetAsync("/v1/invoices/draft?month=2030-01")).StatusCode); // issued: no draft any more

        // late usage: a January record metered on February 3rd lands on February's invoice
        await platform.PublishAsync(node, Record(deployment, 0, 0, 30_000, spilled: true, At(2030, 1, 31, 23, 59, 59)));
        var february = await DraftWhen(customer, "2030-02", d => d.GetProperty("lines").EnumerateArray().Any(l => l.GetProperty("kind").GetString() == "PriorPeriodAdjustment"));
        // Feb 1 00:00:00 → Feb 3 00:00:01 = 172,801 s × 2 PTU × 1.00 / 3600 = 96.0005… → 96.00; own spill: output 10,000 × 10 / 1M = 0.10;
        // January's late output 30,000 × 10 / 1M = 0.30
        Assert.Equal([96.00m, 0.10m, 0.30m], Amounts(february));
        var adjustment = february.GetProperty("lines")[2];
        Assert.Equal(("2030-01", 30_000L), (adjustment.GetProperty("serviceMonth").GetString(), adjustment.GetProperty("tokens").GetInt64()));
        Assert.Equal(issuedBytes, await (await customer.GetAsync($"/v1/invoices/{invoiceId}")).Content.ReadAsStringAsync());

        // a credit note: numbered, with a reason, a retry with the same key is the same note
        var credit = new HttpRequestMessage(HttpMethod.Post, $"/v1/finance/invoices/{invoiceId}/credit-notes")
        {
            Content = JsonContent.Create(new { lines = new[] { new { line = 1, amount = 0.50m } }, reason = "Outage on Jan 31" }),
        };
        credit.Headers.Add("Idempotency-Key", "cn-" + invoiceId);
        var note = await finance.SendAsync(credit);
        Assert.Equal(HttpStatusCode.Created, note.StatusCode);
        var noteBody = await Body(note);
        var retry = new HttpRequestMessage(HttpMethod.Post, $"/v1/finance/invoices/{invoiceId}/credit-notes")
        {
            Content = JsonContent.Create(new { lines = new[] { new { line = 1, amount = 0.50m } }, reason = "Outage on Jan 31" }),
        };
        retry.Headers.Add("Idempotency-Key", "cn-" + invoiceId);
        var replay = await finance.SendAsync(retry);
        Assert.Equal(HttpStatusCode.OK, replay.StatusCode);
        Assert.Equal(noteBody.GetProperty("documentNumber").GetString(), (await Body(replay)).GetProperty("documentNumber").GetString());
        var credited = await Body(await customer.GetAsync($"/v1/invoices/{invoiceId}"));
        // 3.58 − 0.50 = 3.08; the lines and total stay as issued
        Assert.Equal((3.58m, 0.50m, 3.08m), (credited.GetProperty("total").GetDecimal(), credited.GetProperty("credited").GetDecimal(), credited.GetProperty("balance").GetDecimal()));
        Assert.Equal(HttpStatusCode.Conflict, (await finance.PostAsJsonAsync($"/v1/finance/invoices/{invoiceId}/credit-notes", new { amount = 3.09m, reason = "too much" })).StatusCode);

        // finance: the register, sell-through and utilization of the pool
        var register = await Body(await finance.GetAsync("/v1/finance/invoices?month=2030-01"));
        Assert.Contains(register.EnumerateArray(), i => i.GetProperty("id").GetString() == invoiceId && i.GetProperty("balance").GetDecimal() == 3.08m);
        var sell = await Body(await finance.GetAsync("/v1/finance/sell-through?month=2030-01"));
        var pool = sell.EnumerateArray().Single(r => r.GetProperty("region").GetString() == region);
        // capacity 10 PTU × 2 h = 20 PTU-h; sold 1 PTU × 1.5 h + 2 PTU × 0.5 h = 2.5 PTU-h; 2.5 / 20 = 0.125
        Assert.Equal((20m, 2.5m, 0.125m), (pool.GetProperty("capacityPtuHours").GetDecimal(), pool.GetProperty("soldPtuHours").GetDecimal(), pool.GetProperty("sellThrough").GetDecimal()));
        // The usage series (hours, so utilization) are a composite of their own, which the drafts do not wait for.
        await platform.Store.WaitForNonStaleProjectionDataAsync(TimeSpan.FromSeconds(60));
        var utilization = (await Body(await finance.GetAsync("/v1/finance/utilization?month=2030-01"))).EnumerateArray()
            .Where(r => r.GetProperty("region").GetString() == region).ToDictionary(r => r.GetProperty("band").GetString()!, r => r.GetProperty("deploymentHours").GetDecimal());
        // 22:00 → 24:00 sold: 2 deployment-hours; usage only in 23:00 (the late record moved that hour's band, it did not add one)
        Assert.Equal(1m, utilization["idle"]);
        Assert.Equal(1m, Assert.Single(utilization, b => b.Key != "idle").Value);
    }

    [Fact]
    public async Task Two_deployments_of_one_tenant_metered_in_one_message_are_both_billed_on_the_draft_and_the_invoice()
    {
        platform.Clock.Set(At(2031, 3, 31, 22));
        var (tenantId, customer) = await platform.NewTenantAsync();
        var finance = await platform.FinanceAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var node = await platform.NewServingNodeAsync(region);
        var chat = await BuyAsync(customer, region, 1, "chat");
        var summaries = await BuyAsync(customer, region, 1, "summaries");

        // one message, so one consumer batch and one usage event holding both deployments' usage
        platform.Clock.Set(At(2031, 3, 31, 23, 30));
        await platform.PublishAsync(node,
            Record(chat, 0, 0, 10_000, spilled: true, At(2031, 3, 31, 23, 29)),
            Record(summaries, 0, 0, 20_000, spilled: true, At(2031, 3, 31, 23, 29)));

        // spilled output 10,000 × 10 / 1M = 0.10 and 20,000 × 10 / 1M = 0.20; each deployment 22:00 → 23:30 so far at 1 PTU = 1.50
        var draft = await DraftWhen(customer, "2031-03", d => d.GetProperty("lines").GetArrayLength() == 4);
        Assert.Equal([(chat, 0.10m), (summaries, 0.20m)], Spill(draft));
        Assert.Equal(3.30m, draft.GetProperty("total").GetDecimal());

        platform.Clock.Set(At(2031, 4, 3, 0, 0, 1));
        var issued = await finance.PostAsync($"/v1/finance/invoices/{tenantId}/2031-03/issue", null);
        Assert.Equal(HttpStatusCode.Created, issued.StatusCode);
        var invoice = await Body(issued);
        Assert.Equal([(chat, 0.10m), (summaries, 0.20m)], Spill(invoice));
        // the whole month: 22:00 → 24:00 at 1 PTU = 2.00 each
        Assert.Equal(4.30m, invoice.GetProperty("total").GetDecimal());
    }

    [Fact]
    public async Task Usage_within_the_rate_is_on_the_draft_with_every_token_while_the_account_holds_only_what_spilled()
    {
        platform.Clock.Set(At(2031, 7, 31, 22));
        var (tenantId, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var node = await platform.NewServingNodeAsync(region);
        var chat = await BuyAsync(customer, region, 1, "chat");

        platform.Clock.Set(At(2031, 7, 31, 23, 30));
        await platform.PublishAsync(node,
            Record(chat, 1_000, 200, 300, spilled: false, At(2031, 7, 31, 23, 28)),
            Record(chat, 2_000, 0, 400, spilled: false, At(2031, 7, 31, 23, 29)));
        await platform.PublishAsync(node, Record(chat, 0, 0, 10_000, spilled: true, At(2031, 7, 31, 23, 29)));

        var draft = await DraftWhen(customer, "2031-07", d => d.GetProperty("usage").EnumerateArray().Sum(u => u.GetProperty("tokens").GetProperty("records").GetInt64()) == 3);
        var usage = Assert.Single(draft.GetProperty("usage").EnumerateArray());
        var tokens = usage.GetProperty("tokens");
        Assert.Equal((chat, "2031-07"), (usage.GetProperty("deploymentId").GetString(), usage.GetProperty("serviceMonth").GetString()));
        Assert.Equal((3_000L, 200L, 10_700L, 1L, 10_000L), (tokens.GetProperty("promptTokens").GetInt64(), tokens.GetProperty("cachedTokens").GetInt64(),
            tokens.GetProperty("outputTokens").GetInt64(), tokens.GetProperty("spilledRecords").GetInt64(), tokens.GetProperty("spilledOutputTokens").GetInt64()));
        // spilled output 10,000 × 10 / 1M = 0.10; only the spill is billed per token
        Assert.Equal([(chat, 0.10m)], Spill(draft));

        await using var session = platform.Store.QuerySession();
        var account = await session.LoadAsync<Throughput.Invoicing.BillingAccount>(tenantId);
        var spilled = Assert.Single(account!.SpilledUsage["2031-07"].Values);
        Assert.Equal(new Throughput.Deployments.TokenCounts(0, 0, 0, 0, 1, 0, 0, 10_000), spilled.Tokens);
    }

    [Fact]
    public async Task Two_tenants_metered_in_one_message_each_see_only_their_own_usage_on_their_draft()
    {
        platform.Clock.Set(At(2031, 5, 31, 22));
        var (firstId, first) = await platform.NewTenantAsync();
        var (secondId, second) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var node = await platform.NewServingNodeAsync(region);
        var firsts = await BuyAsync(first, region, 1, "firsts");
        var seconds = await BuyAsync(second, region, 1, "seconds");

        // one message, so one usage event holding both tenants' usage, which the billing projection splits by tenant
        platform.Clock.Set(At(2031, 5, 31, 23, 30));
        await platform.PublishAsync(node,
            Record(firsts, 0, 0, 10_000, spilled: true, At(2031, 5, 31, 23, 29)),
            Record(seconds, 0, 0, 20_000, spilled: true, At(2031, 5, 31, 23, 29)),
            Record(seconds, 0, 0, 30_000, spilled: true, At(2031, 5, 31, 23, 29)));

        // spilled output 10,000 × 10 / 1M = 0.10, and 50,000 × 10 / 1M = 0.50; 22:00 → 23:30 at 1 PTU = 1.50 each
        var firstDraft = await DraftWhen(first, "2031-05", d => d.GetProperty("lines").GetArrayLength() == 2);
        var secondDraft = await DraftWhen(second, "2031-05", d => d.GetProperty("lines").GetArrayLength() == 2);
        Assert.Equal([(firsts, 0.10m)], Spill(firstDraft));
        Assert.Equal([(seconds, 0.50m)], Spill(secondDraft));
        Assert.Equal(1.60m, firstDraft.GetProperty("total").GetDecimal());
        Assert.Equal(2.00m, secondDraft.GetProperty("total").GetDecimal());
        // and each account holds only its own deployment's usage, which the drafts alone would not show
        await using var session = platform.Store.QuerySession();
        foreach (var (tenant, deployment) in new[] { (firstId, firsts), (secondId, seconds) })
        {
            var account = await session.LoadAsync<Throughput.Invoicing.BillingAccount>(tenant);
            Assert.Equal([deployment], account!.SpilledUsage.Values.SelectMany(m => m.Values).Select(u => u.DeploymentId).Distinct());
        }
    }

    [Fact]
    public async Task Issuing_the_same_invoices_concurrently_and_again_yields_one_invoice_each_and_numbers_without_gaps()
    {
        platform.Clock.Set(At(2030, 3, 10));
        var finance = await platform.FinanceAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 100);
        var tenants = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var (tenantId, customer) = await platform.NewTenantAsync();
            await BuyAsync(customer, region, 1 + i);
            tenants.Add(tenantId);
        }
        await Eventually.Until(() => Task.WhenAll(tenants.Select(t => finance.GetAsync($"/v1/finance/drafts/{t}?month=2030-03"))), r => r.All(x => x.IsSuccessStatusCode));

        platform.Clock.Set(At(2030, 4, 2));
        var requests = tenants.SelectMany(t => Enumerable.Range(0, 3).Select(_ => t)).Select(t => finance.PostAsync($"/v1/finance/invoices/{t}/2030-03/issue", null));
        var responses = await Task.WhenAll(requests);

        Assert.All(responses, r => Assert.True(r.IsSuccessStatusCode, r.StatusCode.ToString()));
        Assert.Equal(4, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        var numbers = (await Task.WhenAll(responses.Select(Body))).GroupBy(b => b.GetProperty("tenantId").GetString())
            .Select(g => g.Select(b => b.GetProperty("number").GetInt64()).Distinct().Single()).ToList();
        Assert.Equal(4, numbers.Distinct().Count());

        // the automatic issuer finds nothing left to issue for these tenants
        var issuer = platform.Services.GetRequiredService<AutomaticClose>();
        await issuer.CloseDueAsync(CancellationToken.None);
        await using var session = platform.Store.QuerySession();
        Assert.Equal(4, await session.Query<Invoice>().CountAsync(i => tenants.Contains(i.TenantId)));

        // every number from 1 to the register's last was taken exactly once, by one invoice
        var register = await session.LoadAsync<InvoiceRegister>(InvoiceRegister.StreamId);
        var all = await session.Query<Invoice>().Select(i => i.Number).ToListAsync();
        Assert.Equal(Enumerable.Range(1, (int)register!.LastInvoiceNumber).Select(n => (long)n), all.Order());
    }

    [Fact]
    public async Task A_month_end_close_killed_midway_is_finished_by_the_next_run_with_one_invoice_per_tenant_and_no_gap()
    {
        const int tenants = 240;
        // A month no earlier run of this test closed, on a database that outlives test runs.
        BillingMonth month;
        await using (var before = platform.Store.QuerySession())
        {
            do month = BillingMonth.FromIndex(BillingMonth.Parse("2032-01").Index + Random.Shared.Next(0, 6000));
            while (await before.LoadAsync<MonthClose>(month.ToString()) is not null);
        }
        platform.Clock.Set(month.Start.AddDays(9));
        var finance = await platform.FinanceAsync();
        var region = await platform.NewPoolAsync("gpt-4o", tenants);
        var ids = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Parallel.ForEachAsync(Enumerable.Range(0, tenants), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
        {
            var (tenantId, customer) = await platform.NewTenantAsync();
            await BuyAsync(customer, region, 0.5m);
            ids.Add(tenantId);
        });
        Assert.True(await Drafts.WaitUntilCurrentAsync(platform.Store, TimeSpan.FromSeconds(60), CancellationToken.None));

        // A host of its own on the same schema, on a clock past the month, closing one account per transaction.
        await using var host = new PlatformProcess($"tests.kill.{Guid.NewGuid():N}"[..24], partitions: 1, roles: "Api", environment: new Dictionary<string, string>
        {
            ["THROUGHPUT_PG_SCHEMA"] = InvoicingFixture.Schema,
            ["Clock__Start"] = month.End.AddDays(4).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
            ["Invoicing__CloseBatch"] = "1",
            ["Invoicing__AutoIssue"] = "false",
        });
        await host.StartAsync();
        using var hostFinance = host.ClientAs(finance);
        Assert.Equal(HttpStatusCode.NotFound, (await hostFinance.GetAsync($"/v1/finance/closes/{month}")).StatusCode); // warm: the poll below must be quick
        Assert.Equal(HttpStatusCode.Accepted, (await hostFinance.PostAsync($"/v1/finance/closes/{month}", null)).StatusCode);
        await Eventually.Until(async () =>
        {
            var response = await hostFinance.GetAsync($"/v1/finance/closes/{month}");
            return response.StatusCode == HttpStatusCode.OK ? await Body(response) : default;
        }, p => p.ValueKind == JsonValueKind.Object && p.GetProperty("issued").GetInt32() > 0, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(2));
        host.Kill();
        var killedAt = await CloseProgressAsync();
        Assert.True(killedAt.FinishedAt is null && killedAt.Issued + killedAt.Skipped < killedAt.Total, $"killed after {killedAt.Issued} of {killedAt.Total}: too late to test anything");

        platform.Clock.Set(month.End.AddDays(4).AddMinutes(10));
        var close = platform.Services.GetRequiredService<MonthEndClose>();
        Assert.True(await close.CloseAsync(month, "test", waitForDrafts: true, CancellationToken.None) > 0);

        await using var session = platform.Store.QuerySession();
        var tenantIds = ids.ToArray();
        var ours = await session.Query<Invoice>().Where(i => i.Month == month.ToString() && tenantIds.Contains(i.TenantId)).Select(i => i.TenantId).ToListAsync();
        Assert.Equal(tenantIds.Order(), ours.Order()); // every tenant once
        var register = await session.LoadAsync<InvoiceRegister>(InvoiceRegister.StreamId);
        var numbers = await session.Query<Invoice>().Select(i => i.Number).ToListAsync();
        Assert.Equal(Enumerable.Range(1, (int)register!.LastInvoiceNumber).Select(n => (long)n), numbers.Order());
        Assert.NotNull((await CloseProgressAsync()).FinishedAt);

        // The month's register through the API: pages of 50 linked one to the next, the same rows as the whole CSV.
        List<string> paged = [];
        for (var next = $"/v1/finance/invoices?month={month}&limit=50"; next is not null;)
        {
            var response = await finance.GetAsync(next);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) // a database kept between runs holds every earlier run's tenants
            {
                await Task.Delay(response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1));
                continue;
            }
            Assert.True(response.IsSuccessStatusCode, $"{next}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            var page = await Body(response);
            Assert.InRange(page.GetArrayLength(), 1, 50);
            paged.AddRange(page.EnumerateArray().Select(i => i.GetProperty("id").GetString()!));
            next = response.Headers.TryGetValues("Link", out var link) ? System.Text.RegularExpressions.Regex.Match(link.Single(), "^<(.+)>; rel=\"next\"$").Groups[1].Value : null;
        }
        var all = await session.Query<Invoice>().Where(i => i.Period == month.Index).OrderBy(i => i.Number).Select(i => i.Id).ToListAsync();
        Assert.True(all.Count >= tenants);
        Assert.Equal(all, paged);
        var csv = await finance.GetStringAsync($"/v1/finance/invoices?month={month}&format=csv");
        Assert.Equal(all.Count + 1, csv.Split("\r\n", StringSplitOptions.RemoveEmptyEntries).Length);

        async Task<MonthClose> CloseProgressAsync()
        {
            await using var query = platform.Store.QuerySession();
            return (await query.LoadAsync<MonthClose>(month.ToString()))!;
        }
    }

    [Fact]
    public async Task The_automatic_issuer_issues_what_is_due_after_the_grace_period_in_the_tenants_currency()
    {
        platform.Clock.Set(At(2030, 5, 20, 6));
        var (tenantId, customer) = await platform.NewTenantAsync("EUR");
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        await BuyAsync(customer, region, 1.5m);
        platform.Clock.Set(At(2030, 5, 20, 7));
        var draft = await DraftWhen(customer, "2030-05", d => d.GetProperty("lines").GetArrayLength() == 1);
        Assert.Equal("EUR", draft.GetProperty("currency").GetString());

        var issuer = platform.Services.GetRequiredService<AutomaticClose>();
        platform.Clock.Set(At(2030, 6, 2, 23, 59, 59)); // May is over, but its grace period (2 days) is not
        await issuer.CloseDueAsync(CancellationToken.None);
        Assert.Empty((await Body(await customer.GetAsync("/v1/invoices"))).EnumerateArray());

        platform.Clock.Set(At(2030, 6, 3));
        await issuer.CloseDueAsync(CancellationToken.None);
        var invoices = await Body(await customer.GetAsync("/v1/invoices"));
        var invoice = await Body(await customer.GetAsync($"/v1/invoices/{invoices[0].GetProperty("id").GetString()}"));
        // May 20 06:00 → Jun 1 00:00 = 11 days 18 h = 282 h × 1.5 PTU × 0.92 EUR = 389.16 EUR
        Assert.Equal((389.16m, "EUR", "automatic"), (invoice.GetProperty("total").GetDecimal(), invoice.GetProperty("currency").GetString(), invoice.GetProperty("issuedBy").GetString()));
        Assert.Equal(0.92m, invoice.GetProperty("lines")[0].GetProperty("unitPrice").GetDecimal());
        Assert.Equal(tenantId, invoice.GetProperty("tenantId").GetString());
    }

    [Fact]
    public async Task Finance_exports_are_RFC_4180_CSV_and_bad_input_is_a_problem()
    {
        platform.Clock.Set(At(2030, 7, 1));
        var finance = await platform.FinanceAsync();
        var (tenantId, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        await BuyAsync(customer, region, 1, name: "docs, \"quoted\"");
        platform.Clock.Set(At(2030, 7, 1, 10));
        await DraftWhen(customer, "2030-07", d => d.GetProperty("lines").GetArrayLength() == 1);
        Assert.Equal(HttpStatusCode.Conflict, (await finance.PostAsync($"/v1/finance/invoices/{tenantId}/2030-06/issue", null)).StatusCode); // nothing in June
        var early = await finance.PostAsync($"/v1/finance/invoices/{tenantId}/2030-07/issue", null);
        Assert.Equal((HttpStatusCode.Conflict, "application/problem+json"), (early.StatusCode, early.Content.Headers.ContentType!.MediaType)); // July is not over

        platform.Clock.Set(At(2030, 8, 1, 0, 0, 5));
        var issued = await Body(await finance.PostAsync($"/v1/finance/invoices/{tenantId}/2030-07/issue", null));
        var reason = "Refund, \"SLA\" breach\r\nsecond line";
        var note = await finance.PostAsJsonAsync($"/v1/finance/invoices/{issued.GetProperty("id").GetString()}/credit-notes", new { amount = 1.25m, reason });
        Assert.Equal(HttpStatusCode.Created, note.StatusCode);
        var number = (await Body(note)).GetProperty("documentNumber").GetString();

        var bytes = await Eventually.Until(() => finance.GetByteArrayAsync("/v1/finance/credit-notes?month=2030-08&format=csv"), b => Encoding.UTF8.GetString(b).Contains(number!));
        var csv = await finance.GetAsync("/v1/finance/credit-notes?month=2030-08&format=csv");
        Assert.Equal("text/csv", csv.Content.Headers.ContentType!.MediaType);
        Assert.Equal(Encoding.UTF8.GetPreamble(), bytes[..3]);
        var text = Encoding.UTF8.GetString(bytes[3..]);
        Assert.StartsWith("number,credit_note_id,invoice_number,tenant_id,invoice_month,currency,total,reason,issued_at,issued_by\r\n", text);
        Assert.EndsWith("\r\n", text);
        Assert.Contains($"{number},", text);
        Assert.Contains(",USD,1.25,\"Refund, \"\"SLA\"\" breach\r\nsecond line\",2030-08-01T00:00:05Z,", text);

        var register = new HttpRequestMessage(HttpMethod.Get, "/v1/finance/invoices?month=2030-07");
        register.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/csv"));
        var registerCsv = Encoding.UTF8.GetString((await (await finance.SendAsync(register)).Content.ReadAsByteArrayAsync())[3..]);
        var rows = registerCsv.Split("\r\n");
        Assert.Equal("number,invoice_id,tenant_id,month,currency,total,credited,balance,lines,issued_at,issued_by,tenant_name", rows[0]);
        // the whole of July at 1 PTU: 744 h × 1.00 = 744.00; credited 1.25; balance 742.75
        Assert.Contains(rows, r => r.StartsWith(issued.GetProperty("documentNumber").GetString() + ",", StringComparison.Ordinal) && r.Contains(",USD,744.00,1.25,742.75,1,"));

        // An invoice's lines for a spreadsheet: the same bytes for its tenant and for finance.
        var invoiceId = issued.GetProperty("id").GetString();
        var linesBytes = await customer.GetByteArrayAsync($"/v1/invoices/{invoiceId}?format=csv");
        Assert.Equal(linesBytes, await finance.GetByteArrayAsync($"/v1/finance/invoices/{invoiceId}?format=csv"));
        var lines = Encoding.UTF8.GetString(linesBytes[3..]).Split("\r\n");
        Assert.Equal("invoice_number,month,line,kind,description,model,region,deployment_type,deployment_id,reservation_id,from,to,quantity,unit,unit_price,currency,amount", lines[0]);
        Assert.StartsWith($"{issued.GetProperty("documentNumber").GetString()},2030-07,1,Provisioned,\"gpt-4o Global {region} 'docs, \"\"quoted\"\"' (", lines[1]);
        Assert.EndsWith(",2030-07-01T00:00:00Z,2030-08-01T00:00:00Z,744,PTU-hour,1,USD,744.00", lines[1]);
        Assert.Equal(("", 3), (lines[2], lines.Length)); // one line, ended by CRLF

        var revenue = await Eventually.Until(async () => await (await finance.GetAsync("/v1/finance/revenue?from=2030-07&to=2030-08&format=csv")).Content.ReadAsStringAsync(),
            t => t.Contains(region) && t.Contains("\r\n2030-08,USD,,,,"));
        // July at 1 PTU: 744.00 provisioned, 744 PTU-hours; the credit against the whole invoice counts in August, unattributed
        Assert.Contains($"\r\n2030-07,USD,gpt-4o,Global,{region},744.00,0.00,0.00,0.00,744.00,0.00,744.00,744,0.00\r\n", revenue);

        var badMonth = await finance.GetAsync("/v1/finance/revenue?from=July");
        Assert.Equal(HttpStatusCode.BadRequest, badMonth.StatusCode);
        Assert.True((await Body(badMonth)).GetProperty("errors").TryGetProperty("from", out _));
        var both = await finance.PostAsJsonAsync($"/v1/finance/invoices/{issued.GetProperty("id").GetString()}/credit-notes", new { amount = 1m, lines = new[] { new { line = 1, amount = 1m } }, reason = "x" });
        Assert.Equal(HttpStatusCode.BadRequest, both.StatusCode);
        Assert.True((await Body(both)).GetProperty("errors").TryGetProperty("amount", out _));
        var noReason = await finance.PostAsJsonAsync($"/v1/finance/invoices/{issued.GetProperty("id").GetString()}/credit-notes", new { amount = 1m, reason = "" });
        Assert.True((await Body(noReason)).GetProperty("errors").TryGetProperty("reason", out _));
        Assert.Equal(HttpStatusCode.BadRequest, (await customer.GetAsync("/v1/invoices/draft?month=2030-13")).StatusCode);
    }

    [Fact]
    public async Task A_full_rebuild_of_every_projection_reproduces_issued_invoices_byte_for_byte_and_drafts_to_the_cent()
    {
        platform.Clock.Set(At(2030, 9, 30, 20));
        var finance = await platform.FinanceAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 50);
        var node = await platform.NewServingNodeAsync(region);
        var (usd, usdClient) = await platform.NewTenantAsync();
        var (eur, eurClient) = await platform.NewTenantAsync("EUR");
        var a = await BuyAsync(usdClient, region, 2.5m);
        var b = await BuyAsync(eurClient, region, 0.7m);
        var reserve = await usdClient.PostAsJsonAsync("/v1/reservations", new { model = "gpt-4o", region, type = "Global", ptu = 1m, term = "Year" });
        reserve.EnsureSuccessStatusCode();
        platform.Clock.Set(At(2030, 9, 30, 21, 17, 3));
        await ResizeAsync(usdClient, a, 4, etag: 1);
        // A tenant-wide spillover cap the EUR tenant's spilled usage crosses: the cap's events on the deployment's stream and
        // the line that clips its spillover are rebuilt like the rest.
        (await eurClient.PostAsJsonAsync("/v1/alerts", new { metric = "SpilloverSpend", threshold = 0.01m, capsSpillover = true })).EnsureSuccessStatusCode();
        platform.Clock.Set(At(2030, 10, 1, 0, 1));
        await platform.PublishAsync(node, Record(a, 900_000, 120_000, 45_000, true, At(2030, 9, 30, 23, 59)), Record(a, 1_000, 0, 10, false, At(2030, 10, 1, 0, 0, 30)));
        await platform.PublishAsync(node, Record(b, 70_000, 7_000, 9_000, true, At(2030, 9, 30, 23, 58)));
        await DraftWhen(usdClient, "2030-09", d => d.GetProperty("lines").EnumerateArray().Any(l => l.GetProperty("kind").GetString() == "Spillover"));
        await DraftWhen(eurClient, "2030-09", d => d.GetProperty("lines").EnumerateArray().Any(l => l.GetProperty("kind").GetString() == "SpilloverAboveCap"));

        platform.Clock.Set(At(2030, 10, 3, 1));
        var ids = new List<string>();
        foreach (var tenant in new[] { usd, eur })
            ids.Add((await Body(await finance.PostAsync($"/v1/finance/invoices/{tenant}/2030-09/issue", null))).GetProperty("id").GetString()!);
        await platform.PublishAsync(node, Record(a, 10_000, 0, 5_000, true, At(2030, 9, 30, 23, 59, 59)));
        var octoberDraft = await DraftWhen(usdClient, "2030-10", d => d.GetProperty("lines").EnumerateArray().Any(l => l.GetProperty("kind").GetString() == "PriorPeriodAdjustment"));
        var eurOctober = await DraftWhen(eurClient, "2030-10", _ => true);
        await platform.Store.WaitForNonStaleProjectionDataAsync(TimeSpan.FromSeconds(30));

        var before = await SnapshotAsync(ids, [usd, eur], usdClient, eurClient, finance);
        await AssertInvoicePdfAsync(ids[0], usdClient, eurClient, finance);
        var rebuilt = await ProjectionRebuild.RunInHostAsync(platform.Services, [], _ => { }, CancellationToken.None);
        Assert.Contains(rebuilt, r => r.Members.Contains(BillingAccountProjection.ProjectionName));
        Assert.Contains(rebuilt, r => r.Projection == "Invoice");
        await platform.Store.WaitForNonStaleProjectionDataAsync(TimeSpan.FromSeconds(60));
        var after = await SnapshotAsync(ids, [usd, eur], usdClient, eurClient, finance);

        Assert.Equal(before.RawInvoices.Count, after.RawInvoices.Count);
        foreach (var (was, now) in before.RawInvoices.Zip(after.RawInvoices)) Assert.Equal(was, now);
        Assert.Equal(before.InvoiceResponses, after.InvoiceResponses);
        Assert.Equal(octoberDraft.GetProperty("lines").GetRawText(), after.Drafts[0].GetProperty("lines").GetRawText());
        Assert.Equal(octoberDraft.GetProperty("total").GetDecimal(), after.Drafts[0].GetProperty("total").GetDecimal());
        Assert.Equal(eurOctober.GetProperty("total").GetDecimal(), after.Drafts[1].GetProperty("total").GetDecimal());
        Assert.Equal(before.Drafts.Select(d => d.GetProperty("lines").GetRawText()), after.Drafts.Select(d => d.GetProperty("lines").GetRawText()));
        Assert.Equal(before.RawDeployments, after.RawDeployments);
        Assert.Equal(before.FinanceReports, after.FinanceReports);
        Assert.Equal(before.UsageRows, after.UsageRows);

        // The command's rebuild: the write-side snapshots fold in the read models' one pass (the host's daemon paused and its
        // throttle lifter held off, as the command runs with the hosts stopped).
        await using (await ProjectionRebuild.QuietAsync(platform.Services))
        {
            // Gone before the rebuild, so only a rebuild into the tables the hosts read brings them back.
            await using (var session = platform.Store.LightweightSession())
            {
                session.QueueSqlCommand($"delete from {InvoicingFixture.Schema}.mt_doc_deployment");
                session.QueueSqlCommand($"delete from {InvoicingFixture.Schema}.mt_doc_invoice");
                // The usage series' daemon far behind, at the log's first event: where the rebuild stopped, not where the series
                // stood, is where they go on (they would otherwise add the whole log to the minutes and hours again). Not 0:
                // Marten takes a shard at 0 for one without a row and inserts one.
                session.QueueSqlCommand($"update {InvoicingFixture.Schema}.mt_event_progression set last_seq_id = 1 where name in (?, ?)",
                    $"{ReadModels.SeriesName}:V{ReadModels.Version}:All", $"{nameof(SeriesPace)}:V{ReadModels.Version}:All");
                await session.SaveChangesAsync();
            }
            // Pages of a few events, so the rebuild reads ahead across many page boundaries.
            var single = await ProjectionRebuild.RunSinglePassAsync(platform.Settings with { ProjectionPageSize = 7 }, Features.All, [], _ => { }, CancellationToken.None);
            var pass = Assert.Single(single);
            Assert.Contains(nameof(Deployment), pass.Members);
            Assert.Contains(nameof(Invoice), pass.Members);
            Assert.Contains(BillingAccountProjection.ProjectionName, pass.Members);
        }
        await platform.Store.WaitForNonStaleProjectionDataAsync(TimeSpan.FromSeconds(60));
        var afterSinglePass = await SnapshotAsync(ids, [usd, eur], usdClient, eurClient, finance);
        Assert.Equal(before.RawInvoices, afterSinglePass.RawInvoices);
        Assert.Equal(before.InvoiceResponses, afterSinglePass.InvoiceResponses);
        Assert.Equal(before.Drafts.Select(d => d.GetRawText()), afterSinglePass.Drafts.Select(d => d.GetRawText()));
        Assert.Equal(before.RawDeployments, afterSinglePass.RawDeployments);
        Assert.Equal(before.FinanceReports, afterSinglePass.FinanceReports);
        Assert.Equal(before.UsageRows, afterSinglePass.UsageRows);
    }

    /// <summary>The invoice document, read back: what it bills, to whom, when it is due; the tenant's own and finance's only.</summary>
    static async Task AssertInvoicePdfAsync(string invoiceId, HttpClient owner, HttpClient otherTenant, HttpClient finance)
    {
        var invoice = await Body(await owner.GetAsync($"/v1/invoices/{invoiceId}"));
        var download = await owner.GetAsync($"/v1/invoices/{invoiceId}?format=pdf");
        Assert.Equal("application/pdf", download.Content.Headers.ContentType!.MediaType);
        var pdf = await download.Content.ReadAsByteArrayAsync();
        using (var read = UglyToad.PdfPig.PdfDocument.Open(pdf))
        {
            var text = string.Join("\n", read.GetPages().Select(p => p.Text));
            Assert.Contains($"Invoice {invoice.GetProperty("documentNumber").GetString()}", text);
            Assert.Contains("Bill to", text);
            Assert.Contains("Due date2030-11-02", text); // issued 2030-10-03, due 30 days later
            Assert.Contains("Service period2030-09-01 – 2030-09-30", text);
            foreach (var line in invoice.GetProperty("lines").EnumerateArray())
                Assert.Contains(line.GetProperty("amount").GetDecimal().ToString("F2", System.Globalization.CultureInfo.InvariantCulture), text);
            Assert.Contains($"Balance due{invoice.GetProperty("total").GetDecimal().ToString("F2", System.Globalization.CultureInfo.InvariantCulture)}", text);
        }
        Assert.Equal(pdf, await (await finance.GetAsync($"/v1/finance/invoices/{invoiceId}?format=pdf")).Content.ReadAsByteArrayAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await otherTenant.GetAsync($"/v1/invoices/{invoiceId}?format=pdf")).StatusCode);
    }

    sealed record Snapshot(
        IReadOnlyList<string> RawInvoices, IReadOnlyList<string> InvoiceResponses, IReadOnlyList<JsonElement> Drafts, IReadOnlyList<string> RawDeployments,
        IReadOnlyList<string> FinanceReports, IReadOnlyList<string> UsageRows);

    async Task<Snapshot> SnapshotAsync(IReadOnlyList<string> ids, IReadOnlyList<string> tenants, HttpClient usd, HttpClient eur, HttpClient finance)
    {
        await using var session = platform.Store.QuerySession();
        // This test's own invoices and deployments: the schema outlives a run, and documents earlier code wrote (before a
        // field was added) are written again by a rebuild in today's shape, which is no change of what they bill.
        var raw = await session.AdvancedSql.QueryAsync<string>(
            $"select id || ' ' || data::text from {InvoicingFixture.Schema}.mt_doc_invoice where id = any(?) order by id", CancellationToken.None, new object[] { ids.ToArray() });
        var responses = new List<string>();
        foreach (var (id, client) in ids.Zip([usd, eur]))
        {
            responses.Add(await (await client.GetAsync($"/v1/invoices/{id}")).Content.ReadAsStringAsync());
            responses.Add(Convert.ToBase64String(await (await client.GetAsync($"/v1/invoices/{id}?format=pdf")).Content.ReadAsByteArrayAsync()));
        }
        var drafts = new List<JsonElement>();
        foreach (var client in new[] { usd, eur })
            drafts.Add(await Body(await client.GetAsync("/v1/invoices/draft?month=2030-10")));
        var deployments = await session.AdvancedSql.QueryAsync<string>(
            $"select id || ' ' || data::text from {InvoicingFixture.Schema}.mt_doc_deployment where data->>'tenantId' = any(?) order by id", CancellationToken.None, new object[] { tenants.ToArray() });
        var reports = new List<string>();
        foreach (var report in new[] { "utilization", "sell-through" })
        foreach (var month in new[] { "2030-09", "2030-10" })
            reports.Add(await (await finance.GetAsync($"/v1/finance/{report}?month={month}")).Content.ReadAsStringAsync());
        Assert.Contains(reports, r => r.Contains("\"idle\"", StringComparison.Ordinal) && r.Contains("%\"", StringComparison.Ordinal));
        // Minutes and hours are tables of the daemon's own, which a rebuild must empty before it adds the log to them again.
        var usage = new List<string>();
        foreach (var table in new[] { Throughput.Metering.UsageMinuteProjection.TableName(InvoicingFixture.Schema), Throughput.Finance.UsageHours.TableName(InvoicingFixture.Schema) })
        {
            var rows = await session.AdvancedSql.QueryAsync<string>(
                $"select row_to_json(u)::text from {table} u where deployment_id in " +
                $"(select id from {InvoicingFixture.Schema}.mt_doc_deployment where data->>'tenantId' = any(?)) order by 1", CancellationToken.None, new object[] { tenants.ToArray() });
            Assert.NotEmpty(rows);
            usage.AddRange(rows);
        }
        return new Snapshot(raw, responses, drafts, deployments, reports, usage);
    }
}
