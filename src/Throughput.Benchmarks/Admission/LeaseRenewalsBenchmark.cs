using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;
using Throughput.Contracts;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// What one lease renewal costs now that every API host forwards it to the one lease owner over the broker: the round trip
/// a serving node sees, one node renewing back to back and many at once, and the platform host's CPU per renewal.
/// </summary>
public sealed class LeaseRenewalsBenchmark : IBenchmark
{
    public string Name => "lease-renewals";

    public string Summary => "lease renewals through the API and the lease owner: round trip (one node, back to back), renewals/s and host CPU per renewal (many nodes)";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("renewals", "renewals per phase (4000)"),
        ("nodes", "nodes renewing at once in the second phase (16)"),
        .. Services.HostOptions,
    ];

    public async Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var renewals = options.Count("renewals", 4000);
        var nodes = options.Count("nodes", 16);
        var runId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));
        var topology = new BenchTopology(runId, 4);
        var hostEnvironment = options.HostEnvironment(topology.HostSettings());
        var hostDll = Services.PlatformHostDll(options);
        options.EnsureAllRead();

        List<Figure> figures = [];
        try
        {
            await using var host = await PlatformHost.StartAsync(hostDll, hostEnvironment, cancellationToken);
            using var operatorApi = new PlatformApi(host.BaseAddress, host.OperatorKey);
            var tenantId = $"bench-{runId}";
            var region = $"bench-{runId}";
            await operatorApi.PostAsync("/v1/operator/tenants", new { tenantId, name = "Lease renewals benchmark", currency = "USD" }, cancellationToken);
            var tenantKey = (await operatorApi.PostAsync($"/v1/operator/tenants/{tenantId}/keys", null, cancellationToken)).GetProperty("apiKey").GetString()!;
            await operatorApi.PutAsync($"/v1/operator/pools/gpt-4o/{region}", new { capacityPtu = 20 }, cancellationToken);
            using var tenant = operatorApi.As(tenantKey);
            var deployment = (await tenant.PostAsync("/v1/deployments", new { name = "leased", model = "gpt-4o", region, type = "Global", ptu = 20 }, cancellationToken))
                .GetProperty("id").GetString()!;
            var clients = new List<HttpClient>();
            for (var i = 0; i < nodes; i++)
            {
                var producer = $"bench-{runId}-n{i}";
                await NodeCredentials.RegisterAsync(operatorApi, producer, region, tenantId, cancellationToken);
                var key = (await operatorApi.PostAsync("/v1/operator/keys", new { role = "ServingNode", name = producer }, cancellationToken)).GetProperty("apiKey").GetString()!;
                clients.Add(new HttpClient { BaseAddress = host.BaseAddress, DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", key) } });
            }
            var renewal = new AdmissionLeaseRenewal([new AdmissionDemand(deployment, 100_000)]);
            await RenewAsync(clients, renewal, 200, cancellationToken); // warm-up: JIT, connections, the owner's queue

            var alone = await RenewAsync(clients[..1], renewal, renewals, cancellationToken);
            figures.Add(new("one node back to back: renewal round trip p50 / p99", $"{alone.P50:0.00} / {alone.P99:0.00} ms"));
            figures.Add(new("one node back to back: renewals/s", $"{alone.PerSecond:N0}"));
            var before = CpuUse.Now(host.ProcessId);
            var started = Stopwatch.GetTimestamp();
            var many = await RenewAsync(clients, renewal, renewals, cancellationToken);
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var cpu = CpuUse.Between(before, CpuUse.Now(host.ProcessId));
            var hostCores = cpu.Where(c => c.Role == "platform host").Sum(c => c.Cores);
            var brokerCores = cpu.Where(c => c.Role == "rabbitmq").Sum(c => c.Cores);
            figures.Add(new($"{nodes} nodes at once: renewal round trip p50 / p99", $"{many.P50:0.00} / {many.P99:0.00} ms"));
            figures.Add(new($"{nodes} nodes at once: renewals/s", $"{many.PerSecond:N0}"));
            figures.Add(new($"{nodes} nodes at once: CPU per renewal, platform host / RabbitMQ", $"{hostCores * seconds * 1000 / renewals:0.00} / {brokerCores * seconds * 1000 / renewals:0.00} ms"));
            figures.Add(new($"{nodes} nodes at once: cores used", CpuUse.Describe(cpu)));
            foreach (var client in clients) client.Dispose();
        }
        finally
        {
            await topology.RemoveAsync();
        }
        return new BenchmarkReport(Name, figures,
        [
            $"one platform host (all roles); every renewal is one deployment's, through POST /v1/admission/leases, forwarded to the lease owner (the same host here) over RabbitMQ and answered; {Environment.ProcessorCount} cores shared with whatever else runs",
            $"{renewals} renewals per phase: one node back to back, then {nodes} nodes each renewing back to back at once",
        ]);
    }

    sealed record Phase(double P50, double P99, double PerSecond);

    static async Task<Phase> RenewAsync(List<HttpClient> clients, AdmissionLeaseRenewal renewal, int renewals, CancellationToken ct)
    {
        var latencies = new List<double>[clients.Count];
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(clients.Select(async (client, i) =>
        {
            latencies[i] = [];
            for (var n = i; n < renewals; n += clients.Count)
            {
                var at = Stopwatch.GetTimestamp();
                using var response = await client.PostAsJsonAsync("/v1/admission/leases", renewal, ct);
                response.EnsureSuccessStatusCode();
                latencies[i].Add(Stopwatch.GetElapsedTime(at).TotalMilliseconds);
            }
        }));
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var sorted = latencies.SelectMany(l => l).Order().ToList();
        return new Phase(Percentiles.Of(sorted, 50), Percentiles.Of(sorted, 99), renewals / seconds);
    }
}
