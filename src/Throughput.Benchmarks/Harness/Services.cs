namespace Throughput.Benchmarks.Harness;

/// <summary>
/// Where the local services are, from the THROUGHPUT_* variables of infra/env.sh with the same defaults,
/// and where the repository's build output is.
/// </summary>
public static class Services
{
    /// <summary>Where the platform's host connects: a failover group's nodes when THROUGHPUT_PG_HOSTS lists them, as its ServiceSettings does.</summary>
    public static string PostgresConnectionString() =>
        (Env("THROUGHPUT_PG_HOSTS", "") is { Length: > 0 } hosts
            ? $"Host={hosts};Target Session Attributes=read-write;Host Recheck Seconds=1;"
            : $"Host={Env("THROUGHPUT_PG_HOST", "127.0.0.1")};Port={Env("THROUGHPUT_PG_PORT", "5432")};") +
        $"Database={Env("THROUGHPUT_PG_DATABASE", "throughput")};Username={Env("THROUGHPUT_PG_USER", "throughput")};Password={Env("THROUGHPUT_PG_PASSWORD", "throughput")}";

    /// <summary>The schema the platform's hosts use unless a benchmark gives its host another (THROUGHPUT_PG_SCHEMA).</summary>
    public static string PostgresSchema() => Env("THROUGHPUT_PG_SCHEMA", "throughput");

    /// <summary>Drops a benchmark's or drill's scratch schema; never cancelled, so a stopped run still cleans up.</summary>
    public static async Task DropSchemaAsync(string schema)
    {
        await using var database = Npgsql.NpgsqlDataSource.Create(PostgresConnectionString());
        await using var drop = database.CreateCommand($"drop schema if exists {schema} cascade");
        await drop.ExecuteNonQueryAsync(CancellationToken.None);
    }

    /// <summary>The broker as the platform's own side sees it (queues, topology, clean-up), with the platform's user; never a node's.</summary>
    public static Serving.BrokerSettings PlatformBroker() =>
        Serving.BrokerSettings.FromEnvironment() with { User = Env("THROUGHPUT_RABBIT_USER", "throughput"), Password = Env("THROUGHPUT_RABBIT_PASSWORD", "throughput") };

    /// <summary>The options of every benchmark that starts its own platform host.</summary>
    public static readonly IReadOnlyList<(string Option, string Meaning)> HostOptions =
    [
        ("host-env", "NAME=VALUE added to the host's environment; repeatable"),
        ("host-dll", "the platform host to start (this repository's Release build)"),
    ];

    /// <summary>The platform host's Release build in this repository, unless --host-dll names another.</summary>
    public static string PlatformHostDll(BenchOptions options) => options.Text("host-dll", "") is { Length: > 0 } dll
        ? dll
        : Path.Combine(RepositoryRoot(), "src", "Throughput.Platform", "bin", "Release", "net10.0", "Throughput.Platform.dll");

    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Throughput.sln"))) return dir.FullName;
        }
        throw new UsageException("cannot find Throughput.sln above the benchmark's directory; pass --host-dll");
    }

    static string Env(string name, string fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;
}
