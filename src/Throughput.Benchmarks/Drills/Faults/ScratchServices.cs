using System.Globalization;
using System.Text.RegularExpressions;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>
/// The drill's own PostgreSQL cluster and RabbitMQ node, run by <c>infra/drills/nodes.sh</c> under one name on ports of
/// their own beside the shared services, so the drill can crash and restart them while other work keeps using the shared
/// ones. The platform host and the serving SDK reach them through the THROUGHPUT_* variables of infra/env.sh.
/// </summary>
public sealed partial class ScratchServices
{
    const int SharedPostgresPort = 5432;
    const int SharedRabbitPort = 5672;

    readonly string _script;

    ScratchServices(string script, string name, int postgresPort, int rabbitPort)
    {
        _script = script;
        Name = name;
        PostgresPort = postgresPort;
        RabbitPort = rabbitPort;
    }

    public string Name { get; }

    public int PostgresPort { get; }

    public int RabbitPort { get; }

    /// <summary>The ports the environment points at; the shared services' ports are refused, since the drill kills what it points at.</summary>
    public static ScratchServices FromEnvironment(string name)
    {
        var postgres = Port("THROUGHPUT_PG_PORT", SharedPostgresPort);
        var rabbit = Port("THROUGHPUT_RABBIT_PORT", SharedRabbitPort);
        if (postgres == SharedPostgresPort || rabbit == SharedRabbitPort)
            throw new UsageException($"THROUGHPUT_PG_PORT={postgres} and THROUGHPUT_RABBIT_PORT={rabbit}: the drill kills the services it points at, so it " +
                                     "never runs against the shared ones (bash infra/drills.sh points it at scratch nodes on 5442 and 5711)");
        return new ScratchServices(Path.Combine(Services.RepositoryRoot(), "infra", "drills", "nodes.sh"), name, postgres, rabbit);
    }

    /// <summary>Starts both (each only if it is not running yet).</summary>
    public async Task StartAsync(CancellationToken ct)
    {
        await PostgresStartAsync(ct);
        await RabbitStartAsync(ct);
    }

    public async Task StopAsync()
    {
        await RunAsync(CancellationToken.None, "rabbit-stop", Name);
        await RunAsync(CancellationToken.None, "pg-stop", Name);
    }

    public Task PostgresStartAsync(CancellationToken ct) => RunAsync(ct, "pg-start", Name, PostgresPort.ToString(CultureInfo.InvariantCulture));

    /// <summary>A fast shutdown (open transactions rolled back, connections closed) and a start at once.</summary>
    public Task PostgresRestartAsync(CancellationToken ct) => RunAsync(ct, "pg-restart", Name);

    /// <summary>An immediate shutdown: no checkpoint, crash recovery on the next start.</summary>
    public Task PostgresCrashAsync(CancellationToken ct) => RunAsync(ct, "pg-kill", Name);

    public Task RabbitStartAsync(CancellationToken ct) => RunAsync(ct, "rabbit-start", Name, RabbitPort.ToString(CultureInfo.InvariantCulture));

    public Task RabbitStopAsync(CancellationToken ct) => RunAsync(ct, "rabbit-stop", Name);

    /// <summary>SIGKILL of the broker's Erlang VM.</summary>
    public Task RabbitKillAsync(CancellationToken ct) => RunAsync(ct, "rabbit-kill", Name);

    /// <summary>Closes, from the broker's side, every connection whose client-provided name is one of <paramref name="connectionNames"/>; returns how many.</summary>
    public async Task<int> CloseConnectionsAsync(IReadOnlyCollection<string> connectionNames, string reason, CancellationToken ct)
    {
        var listed = await RunAsync(ct, "rabbit-ctl", Name, "-q", "list_connections", "pid", "client_properties");
        var pids = listed.Split('\n').Select(line => ConnectionLine().Match(line))
            .Where(m => m.Success && connectionNames.Contains(m.Groups["name"].Value)).Select(m => m.Groups["pid"].Value).ToList();
        // At once: each rabbitmqctl call takes seconds to start, and the cut should hit the node's connections together.
        await Task.WhenAll(pids.Select(pid => RunAsync(ct, "rabbit-ctl", Name, "-q", "close_connection", pid, reason)));
        return pids.Count;
    }

    Task<string> RunAsync(CancellationToken ct, params string[] args) => NodesScript.RunAsync(_script, args, timeout: null, ct);

    static int Port(string variable, int fallback) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;

    // rabbitmqctl's table: the connection's pid, a tab, then its client properties with {"connection_name","…"} among them.
    [GeneratedRegex("""^(?<pid><[^>]+>)\t.*\{"connection_name","(?<name>[^"]+)"\}""")]
    private static partial Regex ConnectionLine();
}
