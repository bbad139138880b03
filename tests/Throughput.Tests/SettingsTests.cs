using System.Text.RegularExpressions;
using Throughput.Configuration;
using Throughput.Hosting;
using Throughput.Metering;

namespace Throughput.Tests;

public sealed partial class SettingsTests
{
    [Fact]
    public void The_host_defaults_are_the_ones_infra_env_sh_defines()
    {
        var envFile = Path.Combine(RepositoryRoot(), "infra", "env.sh");
        var defaults = DefaultPattern().Matches(File.ReadAllText(envFile))
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);

        var names = new[]
        {
            "THROUGHPUT_PG_HOST", "THROUGHPUT_PG_HOSTS", "THROUGHPUT_PG_PORT", "THROUGHPUT_PG_DATABASE", "THROUGHPUT_PG_USER", "THROUGHPUT_PG_PASSWORD", "THROUGHPUT_PG_SCHEMA",
            "THROUGHPUT_RABBIT_HOST", "THROUGHPUT_RABBIT_PORT", "THROUGHPUT_RABBIT_VHOST", "THROUGHPUT_RABBIT_USER", "THROUGHPUT_RABBIT_PASSWORD", "THROUGHPUT_RABBIT_NODES",
            "THROUGHPUT_RABBIT_MANAGEMENT", "THROUGHPUT_RABBIT_ADMIN_USER", "THROUGHPUT_RABBIT_ADMIN_PASSWORD",
        };
        var saved = names.ToDictionary(n => n, Environment.GetEnvironmentVariable);
        try
        {
            foreach (var name in names) Environment.SetEnvironmentVariable(name, null);
            var s = ServiceSettings.FromEnvironment();
            var expected = new ServiceSettings(
                defaults["THROUGHPUT_PG_HOST"], int.Parse(defaults["THROUGHPUT_PG_PORT"]), defaults["THROUGHPUT_PG_DATABASE"],
                defaults["THROUGHPUT_PG_USER"], defaults["THROUGHPUT_PG_PASSWORD"], defaults["THROUGHPUT_PG_SCHEMA"],
                defaults["THROUGHPUT_RABBIT_HOST"], int.Parse(defaults["THROUGHPUT_RABBIT_PORT"]), defaults["THROUGHPUT_RABBIT_VHOST"],
                defaults["THROUGHPUT_RABBIT_USER"], defaults["THROUGHPUT_RABBIT_PASSWORD"]) 
            {
                PgHosts = defaults["THROUGHPUT_PG_HOSTS"],
                RabbitNodes = defaults["THROUGHPUT_RABBIT_NODES"],
                RabbitManagement = defaults["THROUGHPUT_RABBIT_MANAGEMENT"],
                RabbitAdminUser = defaults["THROUGHPUT_RABBIT_ADMIN_USER"],
                RabbitAdminPassword = defaults["THROUGHPUT_RABBIT_ADMIN_PASSWORD"],
            };
            Assert.Equal(expected, s);
        }
        finally
        {
            foreach (var (name, value) in saved) Environment.SetEnvironmentVariable(name, value);
        }
    }

    [Fact]
    public void A_cluster_listed_in_THROUGHPUT_RABBIT_NODES_replaces_the_single_host()
    {
        var single = new ServiceSettings("pg", 5432, "db", "u", "p", "s", "rabbit", 5673, "vh", "u", "p");
        var cluster = single with { RabbitNodes = "node-a:5721, node-b:5722,node-c" };

        Assert.Equal([("rabbit", 5673)], single.RabbitEndpoints.Select(e => (e.HostName, e.Port)));
        Assert.Equal([("node-a", 5721), ("node-b", 5722), ("node-c", 5672)], cluster.RabbitEndpoints.Select(e => (e.HostName, e.Port)));
    }

    [Fact]
    public void A_failover_group_listed_in_THROUGHPUT_PG_HOSTS_replaces_the_single_host_and_is_written_to_where_it_takes_writes()
    {
        var single = new ServiceSettings("pg", 5433, "db", "u", "p", "s", "rabbit", 5672, "vh", "u", "p");
        var group = single with { PgHosts = "pg-a:5451,pg-b:5452" };

        var one = new Npgsql.NpgsqlConnectionStringBuilder(single.PostgresConnectionString());
        var both = new Npgsql.NpgsqlConnectionStringBuilder(group.PostgresConnectionString());

        Assert.Equal(("pg", 5433, null), (one.Host, one.Port, one.TargetSessionAttributes));
        Assert.Equal(("pg-a:5451,pg-b:5452", "read-write"), (both.Host, both.TargetSessionAttributes));
        Assert.Equal(("db", "u"), (both.Database, both.Username));
    }

    [Theory]
    [InlineData(4, 1)]
    [InlineData(4, 2)]
    [InlineData(8, 3)]
    public void Every_metering_partition_is_owned_by_exactly_one_of_the_hosts(int partitions, int instances)
    {
        var hosts = Enumerable.Range(0, instances).Select(i => new MeteringOptions { Partitions = partitions, Instance = i, Instances = instances }).ToList();

        var owners = Enumerable.Range(0, partitions).Select(p => hosts.Count(h => h.Owns(p)));
        var shares = hosts.Select(h => Enumerable.Range(0, partitions).Count(h.Owns)).ToList();

        Assert.All(owners, count => Assert.Equal(1, count));
        Assert.True(shares.Max() - shares.Min() <= 1, $"uneven shares: {string.Join(", ", shares)}");
    }

    [Theory]
    [InlineData(2, 2)]
    [InlineData(-1, 2)]
    [InlineData(0, 0)]
    public void A_metering_instance_outside_the_instances_is_refused(int instance, int instances)
    {
        var options = new MeteringOptions { Instance = instance, Instances = instances };

        var refused = Assert.Throws<InvalidOperationException>(options.Validate);
        Assert.Contains("Metering:Instance", refused.Message);
    }

    internal static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Throughput.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Throughput.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"\$\{(THROUGHPUT_[A-Z_]+):=([^}]*)\}")]
    private static partial Regex DefaultPattern();
}
