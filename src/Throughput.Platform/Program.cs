using Throughput.Access;
using Throughput.Capacity;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Hosting;
using Throughput.Metering;
using Throughput.Reservations;
using Throughput.Tenants;

var builder = WebApplication.CreateBuilder(args);
var settings = ServiceSettings.FromEnvironment();
var catalog = ModelCatalog.FromConfiguration(builder.Configuration);
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(catalog);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddThroughputEventStore(settings);
builder.Services.AddThroughputMessaging(settings, builder.Configuration);
builder.Services.AddThroughputHealth(settings);
builder.Services.AddThroughputAccess();
builder.Services.AddThroughputApi();
builder.Services.AddHostedService<ThrottleLifter>();

var app = builder.Build();
app.UseThroughputApi();
app.MapThroughputHealth();
app.MapModels(catalog);
app.MapEstimate(catalog);
app.MapDeployments(catalog);
app.MapReservations(catalog);
app.MapUsage();
app.MapUsageSeries();
app.MapQuarantine();
app.MapServingNodes();
app.MapManageTenants(catalog);
app.MapStaffKeys();
app.MapPools(catalog);
app.Run();

public partial class Program;
