namespace Throughput.Benchmarks.Harness;

/// <summary>
/// The platform as <c>infra/deploy</c> runs its roles: the projection daemon in a host process of its own
/// (<c>Host__Roles=Daemon</c>) beside one that serves the API and consumes metering; or every role in one process.
/// </summary>
public sealed class PlatformHosts : IAsyncDisposable
{
    PlatformHosts(PlatformHost host, PlatformHost? daemon)
    {
        Host = host;
        Daemon = daemon;
    }

    /// <summary>The benchmarks' option for every role in one process.</summary>
    public static readonly (string Option, string Meaning) OneHostOption = ("one-host",
        "flag: one host process runs every role; by default the projection daemon runs in a process of its own (Host__Roles=Daemon) beside one with Api,Metering, as the shipped deployments run them");

    public static bool OneProcess(BenchOptions options) => options.Text(OneHostOption.Option, "false") == "true";

    /// <summary>The host that serves the API and consumes metering (and, in one process, runs the daemon too).</summary>
    public PlatformHost Host { get; }

    /// <summary>The daemon's own host; null when <see cref="Host"/> runs every role.</summary>
    public PlatformHost? Daemon { get; }

    public static async Task<PlatformHosts> StartAsync(string hostDll, IReadOnlyDictionary<string, string> environment, bool oneProcess, CancellationToken ct)
    {
        if (oneProcess) return new(await PlatformHost.StartAsync(hostDll, environment, ct), null);
        var host = await PlatformHost.StartAsync(hostDll, new Dictionary<string, string>(environment) { ["Host__Roles"] = "Api,Metering" }, ct);
        try
        {
            return new(host, await PlatformHost.StartAsync(hostDll, new Dictionary<string, string>(environment) { ["Host__Roles"] = "Daemon" }, ct));
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
    }

    /// <summary>CPU time by role now, the daemon's host apart when it has one.</summary>
    public CpuUse Cpu() => CpuUse.Now(Host.ProcessId, daemonPid: Daemon?.ProcessId);

    /// <summary>How the roles run, for a report's conditions.</summary>
    public static string Describe(bool oneProcess) => oneProcess
        ? "one host process with every role (--one-host)"
        : "two host processes as infra/deploy runs the roles: Api,Metering (\"platform host\") and the projection daemon (Host__Roles=Daemon, \"platform daemon\"); --one-host runs all three in one";

    public async ValueTask DisposeAsync()
    {
        if (Daemon is not null) await Daemon.DisposeAsync();
        await Host.DisposeAsync();
    }
}
