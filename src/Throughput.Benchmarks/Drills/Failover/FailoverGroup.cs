using System.Globalization;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Drills.Failover;

/// <summary>
/// The pg_auto_failover group of <c>infra/drills/ha.sh</c>: a monitor and two nodes (a, b) on ports of their own, one the
/// primary and one its synchronous standby. The platform reaches it through THROUGHPUT_PG_HOSTS.
/// </summary>
public sealed class FailoverGroup(string script)
{
    public const string Monitor = "monitor";

    static readonly TimeSpan ScriptTimeout = TimeSpan.FromMinutes(4);

    public static FailoverGroup Local()
    {
        if (Environment.GetEnvironmentVariable("THROUGHPUT_PG_HOSTS") is not { Length: > 0 })
            throw new UsageException("THROUGHPUT_PG_HOSTS is empty: the HA drill needs the failover group's nodes (bash infra/drills.sh ha sets them)");
        return new FailoverGroup(Path.Combine(Services.RepositoryRoot(), "infra", "drills", "ha.sh"));
    }

    /// <summary>Creates what is missing and starts every node; returns once a primary has a secondary.</summary>
    public Task StartAsync(CancellationToken ct) => RunAsync(ct, "start");

    public Task StopAsync() => RunAsync(CancellationToken.None, "stop");

    /// <summary>The node taking writes now (a or b).</summary>
    public async Task<string> PrimaryAsync(CancellationToken ct) => (await RunAsync(ct, "primary")).Trim();

    /// <summary>The node replicating from it, or empty.</summary>
    public async Task<string> StandbyAsync(CancellationToken ct) => (await RunAsync(ct, "standby")).Trim();

    /// <summary>Waits until a node other than <paramref name="except"/> takes writes, as the monitor reports it; returns its name.</summary>
    public async Task<string> WaitForPrimaryAsync(string except, CancellationToken ct) => (await RunAsync(ct, "wait-primary", except)).Trim();

    public async Task<int> PortAsync(string node, CancellationToken ct) => int.Parse((await RunAsync(ct, "port", node)).Trim(), CultureInfo.InvariantCulture);

    /// <summary>SIGKILL of the node's pg_autoctl and PostgreSQL together: the machine is gone.</summary>
    public Task KillAsync(string node, CancellationToken ct) => RunAsync(ct, "kill", node);

    /// <summary>Starts the node's pg_autoctl again: a killed primary rejoins as a standby (pg_rewind if needed).</summary>
    public Task RunAsync(string node, CancellationToken ct) => RunAsync(ct, "run", node);

    /// <summary>The monitor's table, for the report.</summary>
    public async Task<string> StateAsync(CancellationToken ct) => await RunAsync(ct, "state");

    Task<string> RunAsync(CancellationToken ct, params string[] args) => NodesScript.RunAsync(script, args, ScriptTimeout, ct);
}
