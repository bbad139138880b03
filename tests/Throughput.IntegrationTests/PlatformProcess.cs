using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Throughput.IntegrationTests;

/// <summary>The platform host as a real OS process, for tests that kill it: same schema as the fixture, its own metering topology.</summary>
public sealed class PlatformProcess : IAsyncDisposable
{
    readonly Dictionary<string, string> _environment;
    readonly string _dll;
    Process? _process;

    public Uri Address { get; }

    /// <summary>A client of this process with the key <paramref name="fixtureClient"/> calls the fixture's host with: they share the schema, so the key holds here.</summary>
    public HttpClient ClientAs(HttpClient fixtureClient)
    {
        var client = new HttpClient { BaseAddress = Address };
        client.DefaultRequestHeaders.Authorization = fixtureClient.DefaultRequestHeaders.Authorization;
        return client;
    }

    /// <summary>Where the process starts (default: beside its binary), to show it does not depend on it.</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>Everything the process wrote to stdout and stderr so far.</summary>
    public string Output => string.Join('\n', _output);

    readonly System.Collections.Concurrent.ConcurrentQueue<string> _output = new();

    /// <param name="environment">Settings over the defaults, e.g. THROUGHPUT_PG_PORT to reach PostgreSQL through a <see cref="DatabaseLink"/>.</param>
    public PlatformProcess(string meteringExchange, int partitions, string roles = "Api,Metering,Daemon", IReadOnlyDictionary<string, string>? environment = null)
    {
        var port = FreePort();
        Address = new Uri($"http://127.0.0.1:{port}");
        _dll = Dll();
        _environment = new()
        {
            ["THROUGHPUT_PG_SCHEMA"] = PlatformFixture.Schema,
            ["Metering__Exchange"] = meteringExchange,
            ["Metering__QueuePrefix"] = meteringExchange + ".p",
            ["Metering__Partitions"] = partitions.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Logging__LogLevel__Default"] = "Warning",
            ["Host__Roles"] = roles,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) _environment[name] = value;
    }

    /// <summary>Built with the solution, in the same configuration as this test assembly.</summary>
    static string Dll()
    {
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        return Path.Combine(Tests.RepositoryRoot(), "src", "Throughput.Platform", "bin", configuration, "net10.0", "Throughput.Platform.dll");
    }

    /// <summary>One of the platform's commands (e.g. <c>rebuild-projections</c>) run to its end: its exit code and everything it wrote.</summary>
    public static async Task<(int ExitCode, string Output)> RunCommandAsync(IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet", [Dll(), .. arguments]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output + await errors);
    }

    public async Task StartAsync()
    {
        var start = new ProcessStartInfo("dotnet", [_dll, "--urls", Address.ToString()])
        {
            WorkingDirectory = WorkingDirectory ?? Path.GetDirectoryName(_dll)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var (name, value) in _environment) start.Environment[name] = value;
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, line) => { if (line.Data is not null) _output.Enqueue(line.Data); };
        _process.ErrorDataReceived += (_, line) => { if (line.Data is not null) _output.Enqueue(line.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromSeconds(2) };
        await Eventually.Until(async () =>
        {
            if (_process.HasExited) throw new InvalidOperationException($"platform process exited with {_process.ExitCode}");
            try { return (await http.GetAsync(new Uri("/health/ready", UriKind.Relative))).StatusCode; }
            catch (HttpRequestException) { return HttpStatusCode.ServiceUnavailable; }
            catch (TaskCanceledException) { return HttpStatusCode.ServiceUnavailable; }
        }, s => s == HttpStatusCode.OK, TimeSpan.FromSeconds(60));
    }

    /// <summary>SIGKILL: no shutdown hooks, no acks, no flushes.</summary>
    public void Kill()
    {
        _process?.Kill(entireProcessTree: true);
        _process?.WaitForExit();
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false }) Kill();
        _process?.Dispose();
        return ValueTask.CompletedTask;
    }
}
