using Microsoft.Extensions.DependencyInjection;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.IntegrationTests;

[Collection(PlatformCollection.Name)]
public sealed class TelemetryTests(PlatformFixture platform)
{
    [Fact]
    public async Task A_serving_nodes_publish_is_linked_to_the_consumer_batch_that_appends_its_usage_event_with_its_database_work()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o-mini", 10);
        var producer = await platform.NewServingNodeAsync(region);
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1, "gpt-4o-mini");
        // The node's own tracer: something listening to the SDK's source, as an OpenTelemetry tracer provider would.
        var published = new System.Collections.Concurrent.ConcurrentQueue<Activity>();
        using var node = new ActivityListener
        {
            ShouldListenTo = source => source.Name == MeteringPublisher.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = published.Enqueue,
        };
        ActivitySource.AddActivityListener(node);

        await using (var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(platform.BrokerOf(producer), producer) { Exchange = platform.MeteringExchange }))
        {
            var now = DateTimeOffset.UtcNow;
            await publisher.RecordAsync(new MeteringRecord("traced-1", deployment, "req-traced", 120, 0, 30, false, 0, now.AddMilliseconds(-200), now));
            await publisher.FlushAsync();
        }
        // Other tests' publishers in this process report to the same listener.
        var publish = Assert.Single(published.ToArray(), a => (string?)a.GetTagItem("throughput.producer_id") == producer);
        Assert.Equal(ActivityKind.Producer, publish.Kind);

        var consume = await Eventually.Until(
            () => Task.FromResult(platform.Spans.Copy().FirstOrDefault(s => s.OperationName == "metering consume" && s.Links.Any(l => l.Context.TraceId == publish.TraceId))),
            span => span is not null);
        Assert.Equal(ActivityKind.Consumer, consume!.Kind);
        Assert.True((long)consume.GetTagItem("throughput.records")! >= 1);
        Assert.True((int)consume.GetTagItem("throughput.usage_events")! >= 1);
        // The batch's transaction is inside its span: the database commands it ran are its descendants.
        Assert.Contains(platform.Spans.Copy(), s => s.Source.Name == "Npgsql" && s.TraceId == consume.TraceId);
        // MassTransit's receive and process spans carry the batch; the daemon's pages are Marten's own spans.
        Assert.Contains(platform.Spans.Copy(), s => s.Source.Name == "MassTransit" && s.TraceId == consume.TraceId);
        Assert.Contains(platform.Spans.Copy(), s => s.Source.Name == "Marten" && s.DisplayName.StartsWith("marten.readmodels", StringComparison.Ordinal));
        // The span names the usage event it appended, and that event holds the published record's deployment.
        var eventId = Guid.Parse((string)consume.GetTagItem("throughput.usage_event_id")!);
        await using (var session = platform.Services.GetRequiredService<Marten.IDocumentStore>().QuerySession())
        {
            var usage = Assert.IsType<Throughput.Deployments.UsageBatchMetered>((await session.Events.LoadAsync(eventId))?.Data);
            Assert.Contains(usage.Usage, u => u.DeploymentId == deployment);
        }

        var totals = await customer.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deployment}/usage/totals");
        Assert.Equal(1, totals.GetProperty("records").GetInt64());
        // An API request is a trace of its own, from the HTTP server span to the database.
        Assert.Contains(platform.Spans.Copy(), s => s.Source.Name == "Microsoft.AspNetCore" && s.DisplayName.Contains("usage/totals", StringComparison.Ordinal));
    }

    /// <summary>Every series the hand-written exposition had (c2412be^ Hosting/Metrics.cs), and the platform's gauges.</summary>
    static readonly string[] OperatorsSeries =
    [
        "throughput_metering_messages_total", "throughput_metering_records_total", "throughput_metering_duplicate_batches_total",
        "throughput_deployments_throttled_total", "throughput_metering_quarantined_total", "throughput_metering_deliveries_released_total",
        "throughput_metering_commit_ms_sum", "throughput_metering_commit_ms_count",
        "throughput_projection_lag_events", "throughput_projection_lag_seconds", "throughput_pool_sold_ptu", "throughput_pool_month_served_weighted_tokens",
    ];

    [Fact]
    public async Task Metrics_are_scraped_in_prometheus_text_with_the_series_names_operators_already_use()
    {
        var (region, scraped) = await ScrapeAfterUsageAndAQuarantineAsync();

        // The exporter writes an empty label set as {}: the same series as the bare name.
        foreach (var series in new[] { "throughput_metering_messages_total", "throughput_metering_records_total", "throughput_metering_duplicate_batches_total",
                     "throughput_deployments_throttled_total", "throughput_metering_deliveries_released_total", "throughput_metering_commit_ms_sum",
                     "throughput_metering_commit_ms_count", "throughput_projection_lag_events", "throughput_projection_lag_seconds" })
            Assert.Matches(new Regex($"(?m)^{series}(\\{{\\}})? [0-9]"), scraped);
        Assert.Matches(new Regex("(?m)^throughput_metering_quarantined_total\\{reason=\"UnknownDeployment\"\\} [1-9]"), scraped);
        // The test's own pool: one PTU sold, and the record's weighted tokens served (10 prompt + 1 output at gpt-4o-mini's weight) this month.
        Assert.Matches(new Regex($"(?m)^throughput_pool_sold_ptu\\{{model=\"gpt-4o-mini\",region=\"{region}\"\\}} 1$"), scraped);
        Assert.Matches(new Regex($"(?m)^throughput_pool_month_served_weighted_tokens\\{{model=\"gpt-4o-mini\",region=\"{region}\"\\}} [1-9]"), scraped);
        Assert.Contains("# TYPE throughput_metering_records_total counter", scraped);
        Assert.Contains("# TYPE throughput_projection_lag_events gauge", scraped);
    }

    [Fact]
    public async Task Every_series_the_operators_dashboard_queries_is_one_the_platform_exposes()
    {
        var (_, scraped) = await ScrapeAfterUsageAndAQuarantineAsync();
        var exposed = NamesIn(scraped);

        using var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Tests.RepositoryRoot(), "infra", "grafana-dashboard.json")));
        var queried = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray())
            .SelectMany(t => Regex.Matches(t.GetProperty("expr").GetString()!, "throughput_[a-z0-9_]+").Select(m => m.Value))
            .ToHashSet(StringComparer.Ordinal);

        Assert.Contains("throughput_projection_lag_events", queried);
        Assert.Contains("throughput_projection_lag_seconds", queried);
        Assert.Contains("throughput_pool_sold_ptu", queried);
        Assert.Empty(queried.Except(exposed));
    }

    /// <summary>
    /// A host of its own (an OS process: meters are process-wide, and this test process runs other hosts whose meters come and
    /// go), a new pool with one PTU sold, a record counted and one for a deployment that does not exist, and the scrape once
    /// every series operators use is in it (the served tokens once the read models counted the record).
    /// </summary>
    async Task<(string Region, string Scraped)> ScrapeAfterUsageAndAQuarantineAsync()
    {
        var exchange = $"tests.metrics.{Guid.NewGuid():N}"[..26];
        await using var host = new PlatformProcess(exchange, partitions: 1, roles: "Api,Metering");
        await host.StartAsync();
        var (_, fixtureCustomer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o-mini", 10);
        var producer = await platform.NewServingNodeAsync(region);
        var deployment = await PlatformFixture.BuyAsync(fixtureCustomer, region, 1, "gpt-4o-mini");
        await using (var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(platform.BrokerOf(producer), producer) { Exchange = exchange }))
        {
            var now = DateTimeOffset.UtcNow;
            await publisher.RecordAsync(new MeteringRecord("m-1", deployment, "req", 10, 0, 1, false, 0, now.AddSeconds(-1), now));
            await publisher.RecordAsync(new MeteringRecord("ghost", "dep-does-not-exist", "req", 10, 0, 1, false, 0, now.AddSeconds(-1), now));
            await publisher.FlushAsync();
        }
        using var op = new HttpClient { BaseAddress = host.Address };
        op.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", PlatformFixture.OperatorKey);
        var scraped = await Eventually.Until(() => op.GetStringAsync("/metrics"),
            text => OperatorsSeries.All(NamesIn(text).Contains) && text.Contains($"region=\"{region}\"", StringComparison.Ordinal)
                && Regex.IsMatch(text, $"(?m)^throughput_pool_month_served_weighted_tokens\\{{model=\"gpt-4o-mini\",region=\"{region}\"\\}} [1-9]"));
        using var customer = host.ClientAs(fixtureCustomer);
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, (await customer.GetAsync("/metrics")).StatusCode);
        return (region, scraped);
    }

    static HashSet<string> NamesIn(string scraped) =>
        Regex.Matches(scraped, "(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]").Select(m => m.Groups[1].Value).ToHashSet(StringComparer.Ordinal);
}
