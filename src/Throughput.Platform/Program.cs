using Throughput.Hosting;
using Throughput.Metering;

var builder = WebApplication.CreateBuilder(args);
var settings = ServiceSettings.FromEnvironment();
builder.Services.AddSingleton(settings);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddThroughputEventStore(settings);
builder.Services.AddThroughputMessaging(settings, builder.Configuration);
builder.Services.AddThroughputHealth(settings);

var app = builder.Build();
app.MapThroughputHealth();
app.MapUsage();
app.Run();

public partial class Program;
