using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Tenants;

namespace Throughput.Tests.Domain;

static class Fixtures
{
    public static readonly DateTimeOffset Now = new(2026, 11, 22, 10, 30, 0, TimeSpan.Zero);

    public static readonly ModelEntry Gpt4o = new("gpt-4o", 2500, 4, 1, 0.1m, 0.1m, new Dictionary<string, PriceList>
    {
        ["USD"] = new(1m, 260m, 2652m, 2.5m, 1.25m, 10m),
    });

    public static Tenant ActiveTenant(string currency = "USD") => Tenant.Create(new TenantCreated("acme", "Acme", currency, Now));

    public static DeploymentCreated Created(decimal ptu = 1m) =>
        new("dep-1", "acme", "docs", "gpt-4o", "eastus", DeploymentType.Global, ptu, 2500, 4, 1, 60, false, "USD", Gpt4o.Prices["USD"], Now);

    public static Deployment ActiveDeployment(decimal ptu = 1m) => Deployment.Create(Created(ptu));
}
