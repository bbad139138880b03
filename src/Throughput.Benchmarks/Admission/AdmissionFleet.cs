using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// What the admission benchmarks ask about: one tenant, a pool in a region of the run's own (so a feed bound to it hears
/// only this run's pushes), its deployments, a ServingNode key, and optionally a registered serving node that may meter them.
/// </summary>
public sealed record AdmissionFleet(string TenantId, string Region, string Model, IReadOnlyList<string> Deployments, string ServingNodeKey, string? Producer,
    Metering.NodeCredentials? Credentials = null)
{
    public static async Task<AdmissionFleet> SetUpAsync(PlatformApi operatorApi, string runId, string model, int deployments, decimal ptu, bool registerProducer, CancellationToken ct)
    {
        var tenantId = $"bench-{runId}";
        var region = $"bench-{runId}";
        await operatorApi.PostAsync("/v1/operator/tenants", new { tenantId, name = "Admission benchmark", currency = "USD" }, ct);
        var issued = await operatorApi.PostAsync($"/v1/operator/tenants/{tenantId}/keys", null, ct);
        await operatorApi.PutAsync($"/v1/operator/pools/{model}/{region}", new { capacityPtu = deployments * ptu }, ct);

        using var tenant = operatorApi.As(issued.GetProperty("apiKey").GetString()!);
        var ids = new List<string>(deployments);
        for (var i = 0; i < deployments; i++)
        {
            var created = await tenant.PostAsync("/v1/deployments", new { name = $"bench-{i}", model, region, type = "Global", ptu }, ct);
            ids.Add(created.GetProperty("id").GetString()!);
        }

        var servingKey = await operatorApi.PostAsync("/v1/operator/keys", new { role = "ServingNode", name = $"bench-{runId}" }, ct);
        string? producer = null;
        Metering.NodeCredentials? credentials = null;
        if (registerProducer)
        {
            producer = $"bench-{runId}-node";
            credentials = await Metering.NodeCredentials.RegisterAsync(operatorApi, producer, region, tenantId, ct);
        }
        return new AdmissionFleet(tenantId, region, model, ids, servingKey.GetProperty("apiKey").GetString()!, producer, credentials);
    }
}
