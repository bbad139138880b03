using System.Text.RegularExpressions;
using Throughput.Serving;

namespace Throughput.Tests.Serving;

public sealed partial class MeteringPublisherOptionsTests
{
    static readonly Uri Broker = new("amqp://throughput:throughput@127.0.0.1:5672/throughput");

    [Fact]
    public void The_broker_defaults_are_the_ones_infra_env_sh_defines()
    {
        var envFile = File.ReadAllText(Path.Combine(SettingsTests.RepositoryRoot(), "infra", "env.sh"));
        var defaults = DefaultPattern().Matches(envFile).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);

        Assert.Equal(BrokerSettings.FromVariables(defaults.GetValueOrDefault), BrokerSettings.FromVariables(_ => null));
    }

    [Fact]
    public void Broker_settings_come_from_the_THROUGHPUT_RABBIT_variables_and_escape_into_the_uri()
    {
        var variables = new Dictionary<string, string>
        {
            ["THROUGHPUT_RABBIT_HOST"] = "rabbit.internal", ["THROUGHPUT_RABBIT_PORT"] = "5673", ["THROUGHPUT_RABBIT_VHOST"] = "/",
            ["THROUGHPUT_NODE_BROKER_USER"] = "node", ["THROUGHPUT_NODE_BROKER_PASSWORD"] = "p@ss:word",
            ["THROUGHPUT_RABBIT_USER"] = "throughput", ["THROUGHPUT_RABBIT_PASSWORD"] = "the-platforms",
        };

        var settings = BrokerSettings.FromVariables(name => variables.GetValueOrDefault(name));

        Assert.Equal("amqp://node:p%40ss%3Aword@rabbit.internal:5673/%2F", settings.Uri.OriginalString);
        Assert.DoesNotContain("p@ss", settings.ToString());
    }

    [Fact]
    public void A_publisher_without_a_broker_user_of_its_own_is_refused() =>
        Assert.Throws<ArgumentException>(new MeteringPublisherOptions(BrokerSettings.FromVariables(_ => null).Uri, "node-a").Validate);

    [Fact]
    public void A_cluster_listed_in_THROUGHPUT_RABBIT_NODES_gives_every_node_as_an_endpoint()
    {
        var single = BrokerSettings.FromVariables(_ => null);
        var cluster = BrokerSettings.FromVariables(name => name == "THROUGHPUT_RABBIT_NODES" ? "node-a:5721,node-b:5722, node-c" : null);

        Assert.Equal([("127.0.0.1", 5672)], single.Endpoints.Select(e => (e.HostName, e.Port)));
        Assert.Equal([("node-a", 5721), ("node-b", 5722), ("node-c", 5672)], cluster.Endpoints.Select(e => (e.HostName, e.Port)));
        Assert.Equal("amqp://@node-a:5721,node-b:5722, node-c/throughput", cluster.ToString());
        Assert.Equal("", single.User); // a node never falls back to the platform's broker user
    }

    [Fact]
    public void The_default_initial_sequence_is_the_current_unix_time_in_microseconds()
    {
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;
        var options = new MeteringPublisherOptions(Broker, "node-1");
        var after = (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 1) * 1000;

        Assert.InRange(options.InitialSequence, before, after);
        Assert.True(options.InitialSequence < MeteringPublisherOptions.MaxSequence);
    }

    [Theory]
    [InlineData("-starts-with-dash", 1000, 100_000)]
    [InlineData("has space", 1000, 100_000)]
    [InlineData("node-1", 0, 100_000)]
    [InlineData("node-1", 10_001, 100_000)]
    [InlineData("node-1", 1000, 999)]
    public void Options_outside_the_schemas_bounds_are_refused(string producerId, int maxBatchRecords, int bufferCapacity)
    {
        var options = new MeteringPublisherOptions(Broker, producerId) { MaxBatchRecords = maxBatchRecords, BufferCapacity = bufferCapacity };

        Assert.ThrowsAny<ArgumentException>(options.Validate);
    }

    [Fact]
    public void Retries_back_off_exponentially_up_to_the_cap()
    {
        var first = TimeSpan.FromMilliseconds(100);
        var cap = TimeSpan.FromSeconds(5);

        var delays = new[] { 0, 1, 2, 5, 6, 100, int.MaxValue }.Select(attempt => MeteringPublisher.Backoff(attempt, first, cap).TotalMilliseconds);

        Assert.Equal([100, 200, 400, 3200, 5000, 5000, 5000], delays);
    }

    [GeneratedRegex(@"\$\{(THROUGHPUT_RABBIT_[A-Z_]+):=([^}]*)\}")]
    private static partial Regex DefaultPattern();
}
