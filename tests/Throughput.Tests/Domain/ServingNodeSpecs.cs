using Throughput.Http;
using Throughput.Nodes;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class ServingNodeSpecs
{
    static ServingNodeRegistered Registered(string? brokerUser = "node.node-a") => new("node-a", ["eastus"], [], Now, brokerUser);

    [Fact]
    public void Given_no_node_when_registered_then_its_broker_user_is_its_own_and_no_one_elses() =>
        NodeStream.Given()
            .When(node => ServingNodes.Register(node, "node-a", new RegisterServingNode(["eastus"], null), Now))
            .Then(Registered("node.node-a"));

    [Fact]
    public void Given_a_node_when_registered_again_unchanged_then_nothing_happens() =>
        NodeStream.Given(Registered())
            .When(node => ServingNodes.Register(node, "node-a", new RegisterServingNode(["eastus"], []), Now))
            .ThenNothing();

    [Fact]
    public void Given_a_node_registered_with_another_broker_user_when_registered_again_then_it_takes_its_own() =>
        NodeStream.Given(Registered("throughput"))
            .When(node => ServingNodes.Register(node, "node-a", new RegisterServingNode(["eastus"], []), Now))
            .Then(Registered("node.node-a"));

    [Fact]
    public void A_node_registered_again_with_its_own_broker_user_answers_to_it_and_not_to_the_one_before()
    {
        var node = NodeStream.Given(Registered("throughput"), Registered("node.node-a")).State;
        Assert.False(node.SentBy("throughput"));
        Assert.True(node.SentBy("node.node-a"));
    }

    [Fact]
    public void A_node_registered_before_broker_users_were_recorded_answers_to_its_producer_id() =>
        Assert.True(NodeStream.Given(Registered(brokerUser: null)).State.SentBy("node-a"));

    [Theory]
    [InlineData(null)]
    [InlineData("throughput")]
    [InlineData("node.node-b")]
    [InlineData("NODE.NODE-A")]
    public void Only_the_registered_broker_user_is_the_node(string? sentBy) => Assert.False(NodeStream.Given(Registered()).State.SentBy(sentBy));

    [Fact]
    public void Given_a_node_when_credentials_are_issued_then_ServingNodeCredentialsIssued_with_the_hash_only() =>
        NodeStream.Given(Registered())
            .When(node => ServingNodes.IssueCredentials(node, "node-a", "hash", Now))
            .Then(new ServingNodeCredentialsIssued("node-a", "node.node-a", "hash", Now));

    [Fact]
    public void A_node_given_credentials_keeps_only_their_hash()
    {
        var (password, hash) = BrokerAccounts.NewPassword();
        var node = NodeStream.Given(Registered(), new ServingNodeCredentialsIssued("node-a", "node.node-a", hash, Now)).State;
        Assert.Equal(hash, node.PasswordHash);
        Assert.DoesNotContain(password, node.PasswordHash);
    }

    [Fact]
    public void Given_no_node_when_credentials_are_asked_for_then_it_is_not_found() =>
        NodeStream.Given()
            .When(node => ServingNodes.IssueCredentials(node, "node-a", "h", Now))
            .ThenFails(RuleKind.NotFound);

    [Fact]
    public void Given_a_node_when_revoked_then_ServingNodeRevoked() =>
        NodeStream.Given(Registered())
            .When(node => ServingNodes.Revoke(node, "node-a", Now))
            .Then(new ServingNodeRevoked("node-a", Now));

    [Fact]
    public void A_revoked_node_is_revoked_and_keeps_no_password_hash()
    {
        var node = NodeStream.Given(Registered(), new ServingNodeCredentialsIssued("node-a", "node.node-a", "hash", Now), new ServingNodeRevoked("node-a", Now)).State;
        Assert.True(node.Revoked);
        Assert.Null(node.PasswordHash);
    }

    [Fact]
    public void Given_a_revoked_node_when_credentials_are_asked_for_then_conflict() =>
        NodeStream.Given(Registered(), new ServingNodeRevoked("node-a", Now))
            .When(node => ServingNodes.IssueCredentials(node, "node-a", "h", Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_revoked_node_when_registered_again_then_conflict() =>
        NodeStream.Given(Registered(), new ServingNodeRevoked("node-a", Now))
            .When(node => ServingNodes.Register(node, "node-a", new RegisterServingNode(["eastus"], []), Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_revoked_node_when_revoked_again_then_nothing_happens() =>
        NodeStream.Given(Registered(), new ServingNodeRevoked("node-a", Now))
            .When(node => ServingNodes.Revoke(node, "node-a", Now))
            .ThenNothing();

    [Fact]
    public void The_password_hash_is_the_brokers_salted_sha256()
    {
        // rabbitmqctl hash_password computes the same for this salt and password: base64(salt ‖ SHA-256(salt ‖ password)).
        var salt = new byte[] { 0x90, 0x8D, 0xC6, 0x0A };
        var expected = Convert.ToBase64String([.. salt, .. System.Security.Cryptography.SHA256.HashData([.. salt, .. "test12"u8.ToArray()])]);
        Assert.Equal(expected, BrokerAccounts.HashOf("test12", salt));
    }

    [Fact]
    public void A_nodes_broker_permissions_reach_only_the_metering_exchange_its_feed_queue_and_its_regions_limits()
    {
        var permissions = NodePermissions.For(NodeStream.Given(Registered() with { Regions = ["eastus", "westus3"] }).State, "throughput.metering", "throughput.admission");
        bool Matches(string pattern, string name) => System.Text.RegularExpressions.Regex.IsMatch(name, pattern);

        Assert.True(Matches(permissions.Write, "throughput.metering"));
        Assert.True(Matches(permissions.Configure, "amq.gen-Xy1"));
        Assert.True(Matches(permissions.Read, "throughput.admission"));
        Assert.True(Matches(permissions.Read, "throughput.admission.leases"));
        Assert.True(Matches(permissions.AdmissionTopics, "eastus.gpt-4o.dep-1"));
        foreach (var name in new[] { "throughput.admission", "throughput.metering.p0", "throughput.metering.x", "amq.default", "throughput.metering.p0_error" })
            Assert.False(Matches(permissions.Write, name), name);
        foreach (var name in new[] { "throughput.metering", "throughput.metering.p0", "throughput.metering.p0_error", "node-queue" })
        {
            Assert.False(Matches(permissions.Read, name), name);
            Assert.False(Matches(permissions.Configure, name), name);
        }
        Assert.False(Matches(permissions.AdmissionTopics, "#"));
        Assert.False(Matches(permissions.AdmissionTopics, "swedencentral.gpt-4o.dep-2"));
        Assert.False(Matches(permissions.AdmissionTopics, "eastus2.gpt-4o.dep-2"));
    }
}
