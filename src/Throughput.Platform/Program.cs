using Throughput.Catalog;
using Throughput.Configuration;
using Throughput.Hosting;
using Throughput.Store;

if (args is ["rebuild-projections", .. var names])
{
    Environment.ExitCode = await ProjectionRebuild.RunCommandAsync(ServiceSettings.FromEnvironment(), Features.All, names);
    return;
}
// appsettings.json and the catalog are found beside the binary, whatever the working directory.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
// Request lines carry query strings (and a key a client put there): never logged, whatever the configuration says.
builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning);
builder.Logging.AddFilter("Microsoft.AspNetCore.HttpLogging", LogLevel.None);
var settings = ServiceSettings.FromConfiguration(builder.Configuration);
var catalog = ModelCatalog.FromConfiguration(builder.Configuration);
var roles = HostRoles.FromConfiguration(builder.Configuration);
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(catalog);
builder.Services.AddSingleton(roles);
builder.Services.AddSingleton(HostClock.FromConfiguration(builder.Configuration));
builder.Services.AddThroughputEventStore(settings, roles, Features.All);
builder.Services.AddThroughputHealth(settings);
builder.Services.AddThroughputApi(builder.Configuration);
builder.AddThroughputTelemetry();
foreach (var feature in Features.All) feature.AddServices(builder.Services, builder.Configuration, roles);

var app = builder.Build();
HostClock.WarnIfShifted(app);
if (roles.Api) app.UseThroughputDashboard();
app.UseThroughputApi();
app.MapThroughputHealth();
app.MapMetrics();
if (roles.Api)
    foreach (var feature in Features.All) feature.MapEndpoints(app);
app.Run();

public partial class Program;
