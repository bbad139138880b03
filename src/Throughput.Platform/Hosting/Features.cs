using Throughput.Access;
using Throughput.Adapters;
using Throughput.Alerts;
using Throughput.Admission;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Configuration;
using Throughput.Deployments;
using Throughput.Finance;
using Throughput.Forge;
using Throughput.Invoicing;
using Throughput.Metering;
using Throughput.Nodes;
using Throughput.Reservations;
using Throughput.Tenants;
using Throughput.Webhooks;

namespace Throughput.Hosting;

public static class Features
{
    /// <summary>Every feature folder's module: the one list the host, the rebuild command and the tests configure from.</summary>
    public static readonly IReadOnlyList<FeatureModule> All =
    [
        new AccessModule(), new TenantsModule(), new CatalogModule(), new CapacityModule(), new DeploymentsModule(), new NodesModule(), new AdmissionModule(),
        new MeteringModule(), new ReservationsModule(), new InvoicingModule(), new FinanceModule(), new AdaptersModule(), new AlertsModule(), new WebhooksModule(), new ForgeModule(),
    ];
}
