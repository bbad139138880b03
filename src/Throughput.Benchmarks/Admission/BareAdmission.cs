using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using System.Text;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// The HTTP admission path's ceiling: Kestrel with nothing behind it, answering the admission routes with a JSON body of
/// the platform's answer's size. It runs as a child process of the benchmark (its own dll with <see cref="Command"/>), as
/// the platform host does, so the load generator and the server do not share a runtime.
/// </summary>
public static class BareAdmission
{
    public const string Command = "bare-admission";

    /// <summary>Starts the bare server beside the benchmark; <see cref="PlatformHost"/> handles its start, readiness and stop.</summary>
    public static Task<PlatformHost> StartAsync(int bodyBytes, CancellationToken ct) =>
        PlatformHost.StartAsync(typeof(BareAdmission).Assembly.Location, new Dictionary<string, string>(), ct,
            command: [Command, bodyBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)]);

    /// <summary>The child process: serves until SIGTERM.</summary>
    public static async Task<int> ServeAsync(string urls, int bodyBytes)
    {
        await using var app = Build(urls, bodyBytes, TimeSpan.Zero);
        await app.RunAsync();
        return 0;
    }

    /// <summary>The bare server, not started; <paramref name="delay"/> holds every answer back, for the harness's own tests.</summary>
    public static WebApplication Build(string urls, int bodyBytes, TimeSpan delay)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(urls);
        var app = builder.Build();
        var body = Body(bodyBytes);
        app.MapPost("/v1/admission/{deploymentId}/check", (string deploymentId) => AnswerAsync());
        app.MapGet("/v1/admission/{deploymentId}", (string deploymentId) => AnswerAsync());
        app.MapGet("/health/ready", () => Results.Ok());
        return app;

        async Task<IResult> AnswerAsync()
        {
            if (delay > TimeSpan.Zero) await Task.Delay(delay);
            return Results.Bytes(body, "application/json");
        }
    }

    /// <summary>A JSON object of exactly <paramref name="bytes"/> bytes (at least the smallest such object's), padded with a string.</summary>
    public static byte[] Body(int bytes)
    {
        const string empty = """{"pad":""}""";
        return Encoding.UTF8.GetBytes($$"""{"pad":"{{new string('x', Math.Max(0, bytes - empty.Length))}}"}""");
    }
}
