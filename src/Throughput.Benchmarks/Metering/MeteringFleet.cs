namespace Throughput.Benchmarks.Metering;

/// <summary>
/// What the metering benchmark meters into: one tenant, a pool of its own region, deployments so large that nothing
/// throttles (throttling would be a different benchmark), spillover on (the scale-out drill's records include spilled
/// ones, which a deployment without spillover refuses), and registered serving nodes as producers.
/// </summary>
public sealed record MeteringFleet(string TenantId, string TenantKey, string Region, IReadOnlyList<string> Deployments, IReadOnlyList<string> Producers,
    IReadOnlyDictionary<string, NodeCredentials> Credentials)
{
    /// <summary>A cheap model: its high tokens-per-minute per PTU keeps the leaky bucket far from full.</summary>
    public const string Model = "gpt-4o-mini";

    /// <summary>The catalog's largest purchase: 10,000 PTU of gpt-4o-mini admit 370M tokens a minute per deployment.</summary>
    public const decimal MaxPtuPerDeployment = 10_000;

    /// <summary>A pool holds at most 10M PTU (the operator API's bound).</summary>
    const decimal MaxPoolPtu = 10_000_000;

    /// <summary>
    /// As large as the pool allows: 10,000 PTU each up to 1,000 deployments, fewer beyond (1,000 PTU each at 10,000
    /// deployments still admit 37M tokens a minute, far above what a benchmark sends one deployment).
    /// </summary>
    public static decimal PtuPerDeployment(int deployments) => Math.Min(MaxPtuPerDeployment, decimal.Floor(MaxPoolPtu / Math.Max(1, deployments)));

    public static async Task<MeteringFleet> SetUpAsync(Harness.PlatformApi operatorApi, string runId, int deployments, int producers, CancellationToken ct)
    {
        var tenantId = $"bench-{runId}";
        var region = $"bench-{runId}";
        await operatorApi.PostAsync("/v1/operator/tenants", new { tenantId, name = "Metering benchmark", currency = "USD" }, ct);
        var issued = await operatorApi.PostAsync($"/v1/operator/tenants/{tenantId}/keys", null, ct);
        var ptu = PtuPerDeployment(deployments);
        await operatorApi.PutAsync($"/v1/operator/pools/{Model}/{region}", new { capacityPtu = deployments * ptu }, ct);

        var tenantKey = issued.GetProperty("apiKey").GetString()!;
        using var tenant = operatorApi.As(tenantKey);
        var ids = new List<string>(deployments);
        for (var i = 0; i < deployments; i++)
        {
            var created = await tenant.PostAsync("/v1/deployments", new { name = $"bench-{i}", model = Model, region, type = "Global", ptu, spillover = true }, ct);
            ids.Add(created.GetProperty("id").GetString()!);
        }

        var nodes = Enumerable.Range(0, producers).Select(i => $"bench-{runId}-node{i}").ToList();
        var credentials = new Dictionary<string, NodeCredentials>();
        foreach (var node in nodes) credentials[node] = await NodeCredentials.RegisterAsync(operatorApi, node, region, tenantId, ct);
        return new MeteringFleet(tenantId, tenantKey, region, ids, nodes, credentials);
    }
}

/// <summary>A registered serving node's own broker user, as the platform issued it.</summary>
public sealed record NodeCredentials(string User, string Password)
{
    /// <summary>Registers the node for the region and the tenant, or every tenant when none is given.</summary>
    public static async Task<NodeCredentials> RegisterAsync(Harness.PlatformApi operatorApi, string producerId, string region, string? tenantId, CancellationToken ct)
    {
        await operatorApi.PutAsync($"/v1/operator/serving-nodes/{producerId}", new { regions = new[] { region }, tenants = tenantId is null ? [] : new[] { tenantId } }, ct);
        var issued = await operatorApi.PostAsync($"/v1/operator/serving-nodes/{producerId}/credentials", null, ct);
        return new NodeCredentials(issued.GetProperty("brokerUser").GetString()!, issued.GetProperty("brokerPassword").GetString()!);
    }

    public Serving.BrokerSettings On(Serving.BrokerSettings broker) => broker with { User = User, Password = Password };
}
