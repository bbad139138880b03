using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Throughput.Benchmarks.Harness;

/// <summary>
/// The platform host as a separate process, as production runs it (Release build, its own port, settings by
/// environment), so the benchmark measures the host's CPU and memory apart from its own. A drill can kill it and
/// start it again on the same address with the same settings, as a supervisor would.
/// </summary>
public sealed class PlatformHost : IAsyncDisposable
{
    static readonly TimeSpan DefaultReadyTimeout = TimeSpan.FromSeconds(90);
    static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);

    readonly ProcessStartInfo _start;
    readonly StreamWriter _log;
    Process _process;
    bool _disposed;

    PlatformHost(ProcessStartInfo start, StreamWriter log, Uri baseAddress, string operatorKey, string logPath)
    {
        _start = start;
        _log = log;
        _process = Launch(start, log);
        BaseAddress = baseAddress;
        OperatorKey = operatorKey;
        LogPath = logPath;
    }

    public Uri BaseAddress { get; }

    /// <summary>The bootstrap operator key the host was started with: fresh per run, so no key is shared with other hosts.</summary>
    public string OperatorKey { get; }

    public string LogPath { get; }

    public int ProcessId => _process.Id;

    /// <summary>
    /// Starts <paramref name="hostDll"/> with <paramref name="environment"/> added to this process's, and waits until it is ready.
    /// <paramref name="command"/> goes before <c>--urls</c>: the bare ceilings run as this benchmark's own dll with one.
    /// </summary>
    public static async Task<PlatformHost> StartAsync(string hostDll, IReadOnlyDictionary<string, string> environment, CancellationToken cancellationToken,
        TimeSpan? readyTimeout = null, IReadOnlyList<string>? command = null)
    {
        if (!File.Exists(hostDll)) throw new UsageException($"no platform host at {hostDll}: build it first (bash infra/bench.sh builds Release)");
        var baseAddress = new Uri($"http://127.0.0.1:{FreePort()}");
        var operatorKey = $"tpk_kbench{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.{Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_')}";
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { hostDll },
            WorkingDirectory = Path.GetDirectoryName(Path.GetFullPath(hostDll))!, // appsettings.json sits beside the dll
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in (IEnumerable<string>?)command ?? []) start.ArgumentList.Add(argument);
        start.ArgumentList.Add("--urls");
        start.ArgumentList.Add(baseAddress.ToString().TrimEnd('/'));
        foreach (var (name, value) in environment) start.Environment[name] = value;
        start.Environment["Access__BootstrapOperatorKey"] = operatorKey;

        // The port keeps apart the logs of hosts started in the same second.
        var logPath = Path.Combine(Path.GetTempPath(), $"throughput-bench-host-{DateTime.UtcNow:yyyyMMddHHmmss}-{baseAddress.Port}.log");
        var log = new StreamWriter(logPath) { AutoFlush = true };
        var host = new PlatformHost(start, log, baseAddress, operatorKey, logPath);
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

    /// <summary>SIGKILL: a crash, nothing settles, whatever the host was doing is cut off.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        Append(_log, $"---- killed (SIGKILL) at {DateTimeOffset.UtcNow:O} ----");
    }

    /// <summary>Starts the host again after <see cref="KillAsync"/>: same address, key and settings; returns once it is ready.</summary>
    public async Task RestartAsync(CancellationToken cancellationToken)
    {
        if (!_process.HasExited) throw new InvalidOperationException("The platform host is still running.");
        _process.Dispose();
        Append(_log, $"---- started again at {DateTimeOffset.UtcNow:O} ----");
        _process = Launch(_start, _log);
        await WaitUntilReadyAsync(DefaultReadyTimeout, cancellationToken);
    }

    /// <summary>The host's peak resident set (VmHWM) since it started, in bytes.</summary>
    public long PeakResidentBytes() => ProcStatus("VmHWM:");

    public long ResidentBytes() => ProcStatus("VmRSS:");

    public bool HasExited => _process.HasExited;

    /// <summary>SIGTERM for a graceful shutdown (the bus settles its consumers), a kill if that takes too long.</summary>
    public async ValueTask DisposeAsync()
    {
        // A benchmark may stop its host early, to measure a raw ceiling on a quiet machine, inside the host's using.
        if (_disposed) return;
        _disposed = true;
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

    /// <summary>Waits until <c>/health/ready</c> answers 200 (PostgreSQL reachable, bus connected); fails if the process exits or time runs out.</summary>
    public async Task WaitUntilReadyAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
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
                // The readiness check itself took longer than the client waits (a dependency is hanging).
            }
            await Task.Delay(250, cancellationToken);
        }
        throw new TimeoutException($"the platform host was not ready within {timeout.TotalSeconds} s; log: {LogPath}");
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

    static Process Launch(ProcessStartInfo start, StreamWriter log)
    {
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(log, e.Data);
        process.ErrorDataReceived += (_, e) => Append(log, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
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
