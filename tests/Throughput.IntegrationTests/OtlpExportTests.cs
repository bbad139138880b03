using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Throughput.IntegrationTests;

[Collection(PlatformCollection.Name)]
public sealed class OtlpExportTests
{
    /// <summary>A collector on loopback: the host is pointed at it by configuration alone and sends it all three signals.</summary>
    [Fact]
    public async Task A_host_configured_with_an_otlp_endpoint_exports_metrics_traces_and_logs_to_it_over_http()
    {
        var port = FreePort();
        using var collector = new HttpListener();
        collector.Prefixes.Add($"http://127.0.0.1:{port}/");
        collector.Start();
        var received = new ConcurrentDictionary<string, (string ContentType, string? Tenant)>();
        var listening = Task.Run(async () =>
        {
            while (collector.IsListening)
            {
                // The host exports every few hundred milliseconds: stopping the collector can close a request it is answering,
                // and an export the host gave up on closes its own.
                try
                {
                    var context = await collector.GetContextAsync();
                    received[context.Request.Url!.AbsolutePath] = (context.Request.ContentType ?? "", context.Request.Headers["x-tenant"]);
                    context.Response.StatusCode = 200;
                    context.Response.Close();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                }
            }
        });

        var exchange = $"tests.otlp.{Guid.NewGuid():N}"[..24];
        await using var host = new PlatformProcess(exchange, partitions: 1, roles: "Api,Metering", environment: new Dictionary<string, string>
        {
            ["Telemetry__OtlpEndpoint"] = $"http://127.0.0.1:{port}",
            ["Telemetry__OtlpProtocol"] = "http/protobuf",
            ["Telemetry__OtlpHeaders"] = "x-tenant=ops",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "500",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["OTEL_BLRP_SCHEDULE_DELAY"] = "200",
            ["Logging__LogLevel__Default"] = "Information",
        });
        await host.StartAsync();
        using (var http = new HttpClient { BaseAddress = host.Address })
            (await http.GetAsync(new Uri("/health/ready", UriKind.Relative))).EnsureSuccessStatusCode();

        var paths = await Eventually.Until(() => Task.FromResult(received.Keys.ToHashSet()),
            p => p.IsSupersetOf(["/v1/traces", "/v1/metrics", "/v1/logs"]), TimeSpan.FromSeconds(30));
        Assert.Superset(new HashSet<string> { "/v1/traces", "/v1/metrics", "/v1/logs" }, paths);
        Assert.All(paths, p => Assert.Equal(("application/x-protobuf", "ops"), received[p]));
        collector.Stop();
        await listening;
    }

    /// <summary>A caller's W3C trace context is continued by the host, and the host's log lines inside the request carry its trace id.</summary>
    [Fact]
    public async Task Log_lines_written_inside_a_request_carry_the_callers_trace_id()
    {
        await using var host = new PlatformProcess($"tests.logs.{Guid.NewGuid():N}"[..22], partitions: 1, roles: "Api", environment: new Dictionary<string, string>
        {
            ["Telemetry__Traces"] = "true",
            ["Logging__LogLevel__Default"] = "Warning",
            ["Logging__LogLevel__Microsoft.AspNetCore.Authorization"] = "Information",
            ["Logging__Console__FormatterName"] = "json",
            ["Logging__Console__FormatterOptions__IncludeScopes"] = "true",
        });
        await host.StartAsync();
        var traceId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        using (var http = new HttpClient { BaseAddress = host.Address })
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/v1/me"))
        {
            request.Headers.Add("traceparent", $"00-{traceId}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8))}-01");
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.SendAsync(request)).StatusCode); // no key: the refusal is logged
        }
        var line = await Eventually.Until(() => Task.FromResult(host.Output.Split('\n').FirstOrDefault(l => l.Contains("Authorization failed", StringComparison.Ordinal))),
            l => l is not null);
        using var logged = System.Text.Json.JsonDocument.Parse(line!);
        var scopes = logged.RootElement.GetProperty("Scopes").EnumerateArray();
        Assert.Contains(scopes, scope => scope.TryGetProperty("TraceId", out var id) && id.GetString() == traceId);
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
