using System.Net.Http.Json;
using System.Text.Json;
using RabbitMQ.Client;
using Throughput.Contracts;

// Walking-skeleton load: publishes a few metering batches for three deployments as raw JSON and
// prints the totals the platform reports back. Grows into the reference Flywheel batcher.
var platform = new Uri(args.Length > 0 ? args[0] : "http://127.0.0.1:5080");
string Env(string name, string fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;
var factory = new ConnectionFactory
{
    HostName = Env("THROUGHPUT_RABBIT_HOST", "127.0.0.1"),
    Port = int.Parse(Env("THROUGHPUT_RABBIT_PORT", "5672"), System.Globalization.CultureInfo.InvariantCulture),
    VirtualHost = Env("THROUGHPUT_RABBIT_VHOST", "throughput"),
    UserName = Env("THROUGHPUT_RABBIT_USER", "throughput"),
    Password = Env("THROUGHPUT_RABBIT_PASSWORD", "throughput"),
};
await using var connection = await factory.CreateConnectionAsync("flywheel-skeleton");
await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));

var run = Guid.NewGuid().ToString("N")[..8];
using var http = new HttpClient { BaseAddress = platform };
var operatorKey = Env("THROUGHPUT_OPERATOR_KEY", "");
http.DefaultRequestHeaders.Authorization = new("Bearer", operatorKey);
var tenantId = $"demo-{run}";
(await http.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = "Demo customer", currency = "USD" })).EnsureSuccessStatusCode();
(await http.PutAsJsonAsync($"/v1/operator/pools/gpt-4o/eastus", new { capacityPtu = 1000 })).EnsureSuccessStatusCode();
(await http.PutAsJsonAsync($"/v1/operator/serving-nodes/flywheel-{run}", new { regions = (string[])["eastus"] })).EnsureSuccessStatusCode();
var issued = await (await http.PostAsync(new Uri($"/v1/operator/tenants/{tenantId}/keys", UriKind.Relative), null)).Content.ReadFromJsonAsync<JsonElement>();
http.DefaultRequestHeaders.Authorization = new("Bearer", issued.GetProperty("apiKey").GetString());
var deployments = new List<string>();
foreach (var name in new[] { "docs", "summary", "chat" })
{
    var created = await http.PostAsJsonAsync("/v1/deployments", new { name, model = "gpt-4o", region = "eastus", type = "Global", ptu = 1.5 });
    deployments.Add((await created.EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!);
}
var json = new JsonSerializerOptions(JsonSerializerDefaults.Web);
var sequence = 0L;
for (var round = 0; round < 10; round++)
{
    foreach (var deployment in deployments)
    {
        var now = DateTimeOffset.UtcNow;
        var records = Enumerable.Range(0, 50)
            .Select(i => new MeteringRecord($"{run}-{round}-{deployment}-{i}", deployment, $"req-{i}", 200, 0, 1000, false, 0, now.AddSeconds(-1), now))
            .ToArray();
        var batch = new MeteringBatch(MeteringTopology.CurrentVersion, $"flywheel-{run}", ++sequence, now, records);
        var properties = new BasicProperties { ContentType = MeteringTopology.ContentType, DeliveryMode = DeliveryModes.Persistent };
        await channel.BasicPublishAsync(MeteringTopology.Exchange, deployment, mandatory: true, properties, JsonSerializer.SerializeToUtf8Bytes(batch, json));
    }
}
Console.WriteLine($"published {sequence} batches of 50 records for {deployments.Count} deployments of tenant {tenantId}");

foreach (var deployment in deployments)
{
    for (var attempt = 0; ; attempt++)
    {
        var response = await http.GetAsync(new Uri($"/v1/deployments/{deployment}/usage/totals", UriKind.Relative));
        var totals = response.IsSuccessStatusCode ? await response.Content.ReadFromJsonAsync<JsonElement>() : default;
        if (totals.ValueKind == JsonValueKind.Object && totals.GetProperty("records").GetInt64() == 500)
        {
            Console.WriteLine($"{deployment}: {totals}");
            break;
        }
        if (attempt > 300) { Console.Error.WriteLine($"{deployment}: totals did not arrive"); return 1; }
        await Task.Delay(100);
    }
}
return 0;
