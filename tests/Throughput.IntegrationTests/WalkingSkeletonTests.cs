using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;
using Throughput.Metering;

namespace Throughput.IntegrationTests;

[Collection(PlatformCollection.Name)]
public sealed class WalkingSkeletonTests(PlatformFixture platform)
{
    [Fact]
    public async Task A_metering_batch_published_as_raw_json_shows_in_the_deployment_totals()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 5);
        var producer = await platform.NewServingNodeAsync(region);
        var created = await (await customer.PostAsJsonAsync("/v1/deployments", new { name = "skeleton", model = "gpt-4o", region, type = "Global", ptu = 1 }))
            .Content.ReadFromJsonAsync<JsonElement>();
        var deploymentId = created.GetProperty("id").GetString()!;
        var now = DateTimeOffset.UtcNow;
        var batch = new MeteringBatch(1, producer, 1, now,
        [
            new MeteringRecord("r1", deploymentId, "q1", 200, 50, 1000, false, 0, now.AddSeconds(-2), now),
            new MeteringRecord("r2", deploymentId, "q2", 300, 0, 20, false, 0, now.AddSeconds(-1), now),
        ]);

        await platform.PublishAsync(batch);

        var totals = await Eventually.Until(
            async () =>
            {
                var response = await customer.GetAsync($"/v1/deployments/{deploymentId}/usage/totals");
                return response.StatusCode == HttpStatusCode.OK ? await response.Content.ReadFromJsonAsync<Usage.UsageTotals>() : null;
            },
            t => t is { Records: > 0 });

        Assert.Equal(new Usage.UsageTotals(deploymentId, 2, 500, 50, 1020), totals);
    }

    [Fact]
    public async Task Readiness_checks_postgres_and_rabbitmq()
    {
        var http = platform.Client(null);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);
    }
}
