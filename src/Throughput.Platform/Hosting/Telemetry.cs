using Npgsql;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Throughput.Access;
using Throughput.Metering;

namespace Throughput.Hosting;

/// <summary>
/// OpenTelemetry for the host. The platform's meters are scraped at <c>/metrics</c> (Prometheus text, operator key).
/// With <c>Telemetry:OtlpEndpoint</c> set (and <c>Telemetry:OtlpProtocol</c>, <c>Telemetry:OtlpHeaders</c>), metrics, traces (HTTP, Marten, Npgsql, MassTransit and the metering consumer's
/// spans linked to the serving nodes' publishes) and logs (with their trace and span ids) are also exported over OTLP;
/// without it nothing leaves the machine and no span is recorded. <c>Telemetry:Traces=true</c> records spans without an
/// exporter, for one added in process.
/// </summary>
public static class Telemetry
{
    static readonly string[] Sources = [MeteringMetrics.MeterName, "Marten", "MassTransit"];

    public static void AddThroughputTelemetry(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        var otlp = configuration["Telemetry:OtlpEndpoint"] is { Length: > 0 } endpoint ? new Uri(endpoint) : null;
        var protocol = configuration["Telemetry:OtlpProtocol"] switch
        {
            null or "" or "grpc" => OpenTelemetry.Exporter.OtlpExportProtocol.Grpc,
            "http/protobuf" => OpenTelemetry.Exporter.OtlpExportProtocol.HttpProtobuf,
            var other => throw new InvalidOperationException($"Telemetry:OtlpProtocol '{other}' is neither 'grpc' nor 'http/protobuf'"),
        };
        var headers = configuration["Telemetry:OtlpHeaders"];
        // Over HTTP each signal has its own path under the collector's address; over gRPC they share the address.
        void Export(OpenTelemetry.Exporter.OtlpExporterOptions o, string httpPath)
        {
            o.Protocol = protocol;
            o.Endpoint = protocol == OpenTelemetry.Exporter.OtlpExportProtocol.HttpProtobuf ? new Uri(otlp!.AbsoluteUri.TrimEnd('/') + "/" + httpPath) : otlp!;
            if (headers is { Length: > 0 }) o.Headers = headers;
        }
        builder.Services.AddSingleton<PlatformGauges>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<PlatformGauges>());
        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("throughput-platform", serviceInstanceId: configuration["Host:Name"] ?? $"{Environment.MachineName}:{Environment.ProcessId}"))
            .WithMetrics(metrics =>
            {
                // The series keep the names the hand-written exposition gave them: no scope labels, no response cache between scrapes.
                metrics.AddMeter(MeteringMetrics.MeterName, PlatformGauges.MeterName)
                    .AddView(PlatformGauges.SoldPtu, new MetricStreamConfiguration { CardinalityLimit = PlatformGauges.MostPools })
                    .AddView(PlatformGauges.MonthServed, new MetricStreamConfiguration { CardinalityLimit = PlatformGauges.MostPools })
                    .AddPrometheusExporter(o =>
                {
                    o.ScopeInfoEnabled = false;
                    o.ScrapeResponseCacheDurationMilliseconds = 0;
                });
                if (otlp is not null) metrics.AddOtlpExporter(o => Export(o, "v1/metrics"));
            });
        if (otlp is not null || configuration.GetValue<bool>("Telemetry:Traces"))
        {
            telemetry.WithTracing(traces =>
            {
                traces.AddSource(Sources).AddAspNetCoreInstrumentation().AddNpgsql();
                if (otlp is not null) traces.AddOtlpExporter(o => Export(o, "v1/traces"));
            });
        }
        if (otlp is not null) telemetry.WithLogging(logs => logs.AddOtlpExporter(o => Export(o, "v1/logs")), options => options.IncludeScopes = true);
    }

    public static void MapMetrics(this WebApplication app)
    {
        // The gauges exist once their meter does: from start-up on, not from whoever first asks for them.
        app.Services.GetRequiredService<PlatformGauges>();
        app.MapPrometheusScrapingEndpoint("/metrics").RequireAuthorization(Policies.Operator).ExcludeFromDescription();
    }
}
