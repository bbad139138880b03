using System.Diagnostics;
using System.Globalization;

namespace Throughput.Benchmarks.Harness;

/// <summary>Tenants as an operator onboards them through the API: each created, given a key, and buying its deployments.</summary>
public sealed record Onboarding(IReadOnlyList<string> TenantIds, IReadOnlyList<string> DeploymentIds, string FirstTenantKey, IReadOnlyList<Figure> Figures)
{
    /// <summary>
    /// Onboards <paramref name="tenants"/> tenants with <paramref name="deploymentsPerTenant"/> deployments each, in a pool
    /// the operator sizes to hold them all, <paramref name="concurrency"/> tenants at a time; times every call.
    /// </summary>
    public static async Task<Onboarding> RunAsync(PlatformApi operatorApi, string runId, int tenants, int deploymentsPerTenant, string model, string region,
        decimal ptu, int concurrency, CancellationToken cancellationToken)
    {
        await operatorApi.PutAsync($"/v1/operator/pools/{model}/{region}", new { capacityPtu = tenants * deploymentsPerTenant * ptu }, cancellationToken);
        var clock = Stopwatch.StartNew();
        var calls = new Dictionary<string, List<double>> { ["tenant"] = [], ["key"] = [], ["purchase"] = [] };
        var tenantIds = new string[tenants];
        var deploymentIds = new string[tenants * deploymentsPerTenant];
        var firstKey = "";
        async Task<System.Text.Json.JsonElement> Timed(string call, Func<Task<System.Text.Json.JsonElement>> send)
        {
            var started = Stopwatch.GetTimestamp();
            var answer = await send();
            var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            lock (calls) calls[call].Add(ms);
            return answer;
        }
        await Parallel.ForEachAsync(Enumerable.Range(0, tenants), new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var tenantId = tenantIds[i] = $"t-{runId}-{i}";
                await Timed("tenant", () => operatorApi.PostAsync("/v1/operator/tenants", new { tenantId, name = $"Benchmark tenant {i}", currency = "USD" }, ct));
                var key = (await Timed("key", () => operatorApi.PostAsync($"/v1/operator/tenants/{tenantId}/keys", null, ct))).GetProperty("apiKey").GetString()!;
                if (i == 0) firstKey = key;
                using var tenant = operatorApi.As(key);
                for (var d = 0; d < deploymentsPerTenant; d++)
                {
                    var created = await Timed("purchase", () => tenant.PostAsync("/v1/deployments", new { name = $"bench-{d}", model, region, type = "Global", ptu, spillover = true }, ct));
                    deploymentIds[i * deploymentsPerTenant + d] = created.GetProperty("id").GetString()!;
                }
            });
        var callCount = calls.Values.Sum(c => c.Count);
        List<Figure> figures = [new("onboarding: tenant, key and purchases, calls/s", Number(callCount / clock.Elapsed.TotalSeconds))];
        foreach (var (call, ms) in calls)
        {
            ms.Sort();
            figures.Add(new Figure($"onboarding: {call} call, p50 / p99 ms ({concurrency} tenants at a time)", $"{Percentiles.Of(ms, 50):0.0} / {Percentiles.Of(ms, 99):0.0}"));
        }
        return new Onboarding(tenantIds, deploymentIds, firstKey, figures);
    }

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);
}
