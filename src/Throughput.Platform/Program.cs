using Throughput.Access;
using Throughput.Admission;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Configuration;
using Throughput.Deployments;
using Throughput.Hosting;
using Throughput.Invoicing;
using Throughput.Metering;
using Throughput.Reservations;
using Throughput.Tenants;

var settings = ServiceSettings.FromEnvironment();
if (args is ["rebuild-projections", .. var names])
{
    await ProjectionRebuild.RunCommandAsync(settings, names);
    return;
}
// appsettings.json and the catalog are found beside the binary, whatever the working directory.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
// Request lines carry query strings (and a key a client put there): never logged, whatever the configuration says.
builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning);
builder.Logging.AddFilter("Microsoft.AspNetCore.HttpLogging", LogLevel.None);
var catalog = ModelCatalog.FromConfiguration(builder.Configuration);
var roles = HostRoles.FromConfiguration(builder.Configuration);
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(catalog);
builder.Services.AddSingleton(roles);
builder.Services.AddSingleton(HostClock.FromConfiguration(builder.Configuration));
builder.Services.AddThroughputEventStore(settings, roles);
builder.Services.AddThroughputHealth(settings);
builder.Services.AddThroughputAccess();
builder.Services.AddThroughputApi(builder.Configuration);
builder.Services.AddThroughputInvoicing(builder.Configuration, roles);
builder.Services.AddSingleton<AdmissionPush>();
builder.Services.AddSingleton<MetricsExposition>();
if (roles.Metering)
{
    builder.Services.AddThroughputMessaging(settings, builder.Configuration);
    builder.Services.AddSingleton<ThrottleLifter>();
    builder.Services.AddHostedService(sp => sp.GetRequiredService<ThrottleLifter>());
    builder.Services.AddHostedService<LedgerPruning>();
}
builder.Services.AddSingleton<AdmissionTable>();
builder.Services.AddSingleton<BrokerAccounts>();
if (roles.Api)
{
    builder.Services.AddHostedService(sp => sp.GetRequiredService<AdmissionTable>());
    builder.Services.AddHostedService<BrokerAccountsReconciler>();
}

var app = builder.Build();
HostClock.WarnIfShifted(app);
if (roles.Api) app.UseThroughputDashboard();
app.UseThroughputApi();
app.MapThroughputHealth();
app.MapMetrics();
if (roles.Api)
{
    app.MapModels(catalog);
    app.MapEstimate(catalog);
    app.MapDeployments(catalog);
    app.MapReservations(catalog);
    app.MapUsage();
    app.MapUsageSeries();
    app.MapQuarantine();
    app.MapServingNodes();
    app.MapAdmission();
    app.MapManageTenants(catalog);
    app.MapStaffKeys();
    app.MapCaller();
    app.MapPools(catalog);
    app.MapInvoicing();
}
app.Run();

public partial class Program;
