using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Metering;
using Throughput.Nodes;
using Throughput.Reservations;
using Throughput.Tenants;

namespace Throughput.Tests.Domain;

static class Fixtures
{
    public static readonly DateTimeOffset Now = new(2026, 11, 22, 10, 30, 0, TimeSpan.Zero);

    public static readonly ModelEntry Gpt4o = new("gpt-4o", 2500, 4, 1, 0.1m, 0.1m, new Dictionary<string, PriceList>
    {
        ["USD"] = new(1m, 260m, 2652m, 2.5m, 1.25m, 10m),
    });

    // Each stream's specs fold their given events with the aggregate's own fold: its first event creates it, Then the rest.
    public static readonly Spec<Deployment, DeploymentEvent> DeploymentStream = new((d, e) => d is null ? Deployment.Create((DeploymentCreated)e) : d.Then(e));
    public static readonly Spec<Tenant, TenantEvent> TenantStream = new((t, e) => t is null ? Tenant.Create((TenantCreated)e) : t.Then(e));
    public static readonly Spec<CapacityPool, PoolEvent> PoolStream = new((p, e) => p is null ? CapacityPool.Create((PoolOpened)e) : p.Then(e));
    public static readonly Spec<Reservation, ReservationEvent> ReservationStream = new((r, e) => r is null ? Reservation.Create((ReservationPurchased)e) : r.Then([e]));
    public static readonly Spec<Staff, StaffEvent> StaffStream = new((s, e) => s is null ? Staff.Create((StaffKeyIssued)e) : s.Then(e));
    public static readonly Spec<ServingNode, ServingNodeEvent> NodeStream = new((n, e) => n is null ? ServingNode.Create((ServingNodeRegistered)e) : n.Then(e));

    public static TenantCreated AcmeCreated(string currency = "USD") => new("acme", "Acme", currency, Now);

    public static readonly TenantSuspended AcmeSuspended = new("acme", "unpaid", Now);

    public static Tenant ActiveTenant(string currency = "USD") => TenantStream.Given(AcmeCreated(currency)).State;

    public static Tenant SuspendedTenant() => TenantStream.Given(AcmeCreated(), AcmeSuspended).State;

    public static DeploymentCreated Created(decimal ptu = 1m) =>
        new("dep-1", "acme", "docs", "gpt-4o", "eastus", DeploymentType.Global, ptu, 2500, 4, 1, 60, false, "USD", Gpt4o.Prices["USD"], Now);

    public static Deployment ActiveDeployment(decimal ptu = 1m) => DeploymentStream.Given(Created(ptu)).State;

    public static readonly string PoolId = CapacityPool.StreamId("gpt-4o", "eastus");

    /// <summary>The gpt-4o pool in eastus opened with this much capacity, of which this much is sold (to dep-0).</summary>
    public static PoolEvent[] PoolHistory(decimal capacity, decimal sold = 0) =>
    [
        new PoolOpened(PoolId, "gpt-4o", "eastus", Now),
        new CapacityAdded(PoolId, capacity, Now),
        .. (sold > 0 ? new[] { new PtusAllocated(PoolId, "dep-0", sold, Now) } : []),
    ];

    public static CapacityPool Pool(decimal capacity, decimal sold = 0) => PoolStream.Given(PoolHistory(capacity, sold)).State;
}
