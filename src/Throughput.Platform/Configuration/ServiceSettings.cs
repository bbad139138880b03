using RabbitMQ.Client;

namespace Throughput.Configuration;

/// <summary>
/// Connection settings for PostgreSQL and RabbitMQ. The variables and their local defaults are the
/// ones infra/env.sh defines, so scripts, host and tests agree without a config file.
/// </summary>
public sealed record ServiceSettings(
    string PgHost, int PgPort, string PgDatabase, string PgUser, string PgPassword, string PgSchema,
    string RabbitHost, int RabbitPort, string RabbitVirtualHost, string RabbitUser, string RabbitPassword)
{
    public static ServiceSettings FromEnvironment() => From(Environment.GetEnvironmentVariable);

    /// <summary>
    /// The same variables read from a host's configuration, which holds the environment, so a host built in-process (the
    /// integration tests') can be given a schema of its own with <c>UseSetting("THROUGHPUT_PG_SCHEMA", …)</c>.
    /// </summary>
    public static ServiceSettings FromConfiguration(IConfiguration configuration)
    {
        var settings = From(name => configuration[name]);
        // A host setting, not a connection's: appsettings.json or Projections__UsageSeriesPace.
        return configuration.GetValue<TimeSpan?>("Projections:UsageSeriesPace") is { } pace ? settings with { UsageSeriesPace = pace } : settings;
    }

    static ServiceSettings From(Func<string, string?> read)
    {
        return new(
            Env("THROUGHPUT_PG_HOST", "127.0.0.1"),
            int.Parse(Env("THROUGHPUT_PG_PORT", "5432"), System.Globalization.CultureInfo.InvariantCulture),
            Env("THROUGHPUT_PG_DATABASE", "throughput"),
            Env("THROUGHPUT_PG_USER", "throughput"),
            Env("THROUGHPUT_PG_PASSWORD", "throughput"),
            Env("THROUGHPUT_PG_SCHEMA", "throughput"),
            Env("THROUGHPUT_RABBIT_HOST", "127.0.0.1"),
            int.Parse(Env("THROUGHPUT_RABBIT_PORT", "5672"), System.Globalization.CultureInfo.InvariantCulture),
            Env("THROUGHPUT_RABBIT_VHOST", "throughput"),
            Env("THROUGHPUT_RABBIT_USER", "throughput"),
            Env("THROUGHPUT_RABBIT_PASSWORD", "throughput"))
        {
            PgHosts = Env("THROUGHPUT_PG_HOSTS", ""),
            RabbitNodes = Env("THROUGHPUT_RABBIT_NODES", ""),
            RabbitManagement = Env("THROUGHPUT_RABBIT_MANAGEMENT", "http://127.0.0.1:15672"),
            RabbitAdminUser = Env("THROUGHPUT_RABBIT_ADMIN_USER", "throughput-admin"),
            RabbitAdminPassword = Env("THROUGHPUT_RABBIT_ADMIN_PASSWORD", "throughput-admin"),
        };

        string Env(string name, string fallback) => read(name) is { Length: > 0 } value ? value : fallback;
    }

    /// <summary>
    /// Events the async read models fold per page, live and in a rebuild. A page of usage events costs one write per touched
    /// document, so large pages catch up fast; pages of 10,000 and 20,000 rebuilt slower here. Tests set small pages.
    /// </summary>
    public int ProjectionPageSize { get; init; } = 5000;

    /// <summary>
    /// The least time between the starts of two pages of the usage series (minutes, hours, pool utilization), so that a page
    /// writes each deployment's rows once for the interval's usage rather than once a second (the usage series' pace, <c>SeriesPace</c>;
    /// <c>Projections:UsageSeriesPace</c>, <c>00:00:00</c> for none).
    /// </summary>
    public TimeSpan UsageSeriesPace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Every PostgreSQL node of a failover group, <c>host[:port]</c> comma-separated (THROUGHPUT_PG_HOSTS): the host writes to
    /// whichever one takes writes and follows a failover; empty: PgHost and PgPort alone.
    /// </summary>
    public string PgHosts { get; init; } = "";

    /// <summary>
    /// Every node of a RabbitMQ cluster, <c>host[:port]</c> comma-separated (THROUGHPUT_RABBIT_NODES), so the host
    /// reconnects to a surviving node when one dies; empty: RabbitHost and RabbitPort alone.
    /// </summary>
    public string RabbitNodes { get; init; } = "";

    /// <summary>
    /// The RabbitMQ management API of every node, comma-separated (THROUGHPUT_RABBIT_MANAGEMENT): where the platform creates,
    /// changes and deletes serving nodes' broker users. Users are cluster-wide, so any node that answers will do.
    /// </summary>
    public string RabbitManagement { get; init; } = "";

    /// <summary>The broker administrator the platform provisions serving nodes' users as; it has no access to any vhost's messages.</summary>
    public string RabbitAdminUser { get; init; } = "";

    public string RabbitAdminPassword { get; init; } = "";

    public IReadOnlyList<Uri> RabbitManagementEndpoints =>
        [.. RabbitManagement.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(u => new Uri(u.EndsWith('/') ? u : u + "/"))];

    /// <summary>Where AMQP connections may go: the cluster's nodes, or the one configured host.</summary>
    public IReadOnlyList<AmqpTcpEndpoint> RabbitEndpoints =>
        RabbitNodes.Length == 0 ? [new AmqpTcpEndpoint(RabbitHost, RabbitPort)] : AmqpTcpEndpoint.ParseMultiple(RabbitNodes);

    /// <summary>
    /// The platform's connections compress large values with lz4 rather than PostgreSQL's default pglz: a usage event of a
    /// batch spread over thousands of deployments is a megabyte or more of JSON, and pglz took longer over it than
    /// parsing it did (PostgreSQL 14 or later, built with lz4, as Debian's and the official images are).
    /// </summary>
    public string PostgresConnectionString(string? database = null) =>
        $"{PostgresServers};Database={database ?? PgDatabase};Username={PgUser};Password={PgPassword};Maximum Pool Size=64;Read Buffer Size=65536;Options=-c default_toast_compression=lz4";

    /// <summary>
    /// Read-write rather than primary: pg_auto_failover promotes a standby read-only until the old primary is known to be
    /// demoted, and Npgsql would take that node for a primary. A node's role is cached for a second, not Npgsql's default 10 s,
    /// so writes find the new primary soon after it is promoted.
    /// </summary>
    string PostgresServers => PgHosts.Length == 0
        ? $"Host={PgHost};Port={PgPort}"
        : $"Host={PgHosts};Port={PgPort};Target Session Attributes=read-write;Host Recheck Seconds=1";

    public Uri RabbitUri => new($"amqp://{Uri.EscapeDataString(RabbitUser)}:{Uri.EscapeDataString(RabbitPassword)}@{RabbitHost}:{RabbitPort}/{Uri.EscapeDataString(RabbitVirtualHost)}");

}
