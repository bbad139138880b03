using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Throughput.Benchmarks.Harness;

/// <summary>
/// The platform host as a separate process, as production runs it (Release build, its own port, settings by
/// environment), so the benchmark measures the host's CPU and memory apart from its own.
/// </summary>
public sealed class PlatformHost : IAsyncDisposable
{
    static readonly TimeSpan DefaultReadyTimeout = TimeSpan.FromSeconds(90);
    static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);

    readonly Process _process;
    readonly StreamWriter _log;

    PlatformHost(Process process, StreamWriter log, Uri baseAddress, string operatorKey, string logPath)
    {
        _process = process;
        _log = log;
        BaseAddress = baseAddress;
        OperatorKey = operatorKey;
        LogPath = logPath;
    }

    public Uri BaseAddress { get; }

    /// <summary>The bootstrap operator key the host was started with: fresh per run, so no key is shared with other hosts.</summary>
    public string OperatorKey { get; }

    public string LogPath { get; }

    public int ProcessId => _process.Id;

    /// <summary>Starts <paramref name="hostDll"/> with <paramref name="environment"/> added to this process's, and waits until it is ready.</summary>
    public static async Task<PlatformHost> StartAsync(string hostDll, IReadOnlyDictionary<string, string> environment, CancellationToken cancellationToken,
        TimeSpan? readyTimeout = null)
    {
        if (!File.Exists(hostDll)) throw new UsageException($"no platform host at {hostDll}: build it first (bash infra/bench.sh builds Release)");
        var baseAddress = new Uri($"http://127.0.0.1:{FreePort()}");
        var operatorKey = $"tpk_kbench{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.{Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_')}";
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { hostDll, "--urls", baseAddress.ToString().TrimEnd('/') },
            WorkingDirectory = Path.GetDirectoryName(Path.GetFullPath(hostDll))!, // appsettings.json sits beside the dll
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (name, value) in environment) start.Environment[name] = value;
        start.Environment["Access__BootstrapOperatorKey"] = operatorKey;

        // The port keeps apart the logs of hosts started in the same second.
        var logPath = Path.Combine(Path.GetTempPath(), $"throughput-bench-host-{DateTime.UtcNow:yyyyMMddHHmmss}-{baseAddress.Port}.log");
        var log = new StreamWriter(logPath) { AutoFlush = true };
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(log, e.Data);
        process.ErrorDataReceived += (_, e) => Append(log, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var host = new PlatformHost(process, log, baseAddress, operatorKey, logPath);
        try
        {
            await host.WaitUntilReadyAsync(readyTimeout ?? DefaultReadyTimeout, cancellationToken);
            return host;
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
    }

    /// <summary>The host's peak resident set (VmHWM) since it started, in bytes.</summary>
    public long PeakResidentBytes() => ProcStatus("VmHWM:");

    public long ResidentBytes() => ProcStatus("VmRSS:");

    public bool HasExited => _process.HasExited;

    /// <summary>SIGKILL, a crash: no shutdown, no acks, no flushes.</summary>
    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>SIGTERM for a graceful shutdown (the bus settles its consumers), a kill if that takes too long.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
                await term.WaitForExitAsync();
            using var patience = new CancellationTokenSource(StopTimeout);
            try
            {
                await _process.WaitForExitAsync(patience.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        _process.Dispose();
        lock (_log) _log.Dispose();
    }

    async Task WaitUntilReadyAsync(TimeSpan readyTimeout, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.GetTimestamp() + (long)(readyTimeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (_process.HasExited) throw new InvalidOperationException($"the platform host exited with {_process.ExitCode}; log: {LogPath}");
            try
            {
                using var ready = await http.GetAsync(new Uri("/health/ready", UriKind.Relative), cancellationToken);
                if (ready.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // The probe's own timeout: a host starting on a busy machine can take longer than that to answer.
            }
            await Task.Delay(250, cancellationToken);
        }
        throw new TimeoutException($"the platform host was not ready within {readyTimeout.TotalSeconds} s; log: {LogPath}");
    }

    long ProcStatus(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }

    static void Append(StreamWriter log, string? line)
    {
        if (line is null) return;
        lock (log) log.WriteLine(line);
    }

    static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
