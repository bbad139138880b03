using Throughput.Metering;
using Throughput.Http;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class ServingNodeSpecs
{
    static ServingNode Registered(string? brokerUser = "node.node-a") =>
        ServingNode.Create(new ServingNodeRegistered("node-a", ["eastus"], [], Now, brokerUser));

    [Fact]
    public void Given_no_node_when_registered_then_its_broker_user_is_its_own_and_no_one_elses()
    {
        var events = ServingNodes.Register(null, "node-a", new RegisterServingNode(["eastus"], null), Now);
        Assert.Equal("node.node-a", Assert.IsType<ServingNodeRegistered>(Assert.Single(events)).BrokerUser);
    }

    [Fact]
    public void Given_a_node_when_registered_again_unchanged_then_nothing_happens() =>
        Assert.Empty(ServingNodes.Register(Registered(), "node-a", new RegisterServingNode(["eastus"], []), Now));

    [Fact]
    public void Given_a_node_registered_with_another_broker_user_when_registered_again_then_it_takes_its_own()
    {
        var events = ServingNodes.Register(Registered("throughput"), "node-a", new RegisterServingNode(["eastus"], []), Now);
        var registered = Assert.IsType<ServingNodeRegistered>(Assert.Single(events));
        Assert.False(Registered("throughput").Apply(registered).SentBy("throughput"));
        Assert.True(Registered("throughput").Apply(registered).SentBy("node.node-a"));
    }

    [Fact]
    public void A_node_registered_before_broker_users_were_recorded_answers_to_its_producer_id() =>
        Assert.True(Registered(brokerUser: null).SentBy("node-a"));

    [Theory]
    [InlineData(null)]
    [InlineData("throughput")]
    [InlineData("node.node-b")]
    [InlineData("NODE.NODE-A")]
    public void Only_the_registered_broker_user_is_the_node(string? sentBy) => Assert.False(Registered().SentBy(sentBy));

    [Fact]
    public void Given_a_node_when_credentials_are_issued_then_only_their_hash_is_kept_on_it()
    {
        var (password, hash) = BrokerAccounts.NewPassword();
        var issued = Assert.IsType<ServingNodeCredentialsIssued>(Assert.Single(ServingNodes.IssueCredentials(Registered(), "node-a", hash, Now)));
        var node = Registered().Apply(issued);
        Assert.Equal(hash, node.PasswordHash);
        Assert.DoesNotContain(password, node.PasswordHash);
    }

    [Fact]
    public void Given_no_node_when_credentials_are_asked_for_then_it_is_not_found() =>
        Assert.Equal(RuleKind.NotFound, Assert.Throws<RuleViolation>(() => ServingNodes.IssueCredentials(null, "node-a", "h", Now)).Kind);

    [Fact]
    public void Given_a_revoked_node_then_it_gets_no_credentials_cannot_be_registered_again_and_revoking_again_changes_nothing()
    {
        var revoked = Registered().Apply(Assert.IsType<ServingNodeRevoked>(Assert.Single(ServingNodes.Revoke(Registered(), "node-a", Now))));
        Assert.True(revoked.Revoked);
        Assert.Null(revoked.PasswordHash);
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => ServingNodes.IssueCredentials(revoked, "node-a", "h", Now)).Kind);
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => ServingNodes.Register(revoked, "node-a", new RegisterServingNode(["eastus"], []), Now)).Kind);
        Assert.Empty(ServingNodes.Revoke(revoked, "node-a", Now));
    }

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
        var permissions = NodePermissions.For(Registered() with { Regions = ["eastus", "westus3"] }, "throughput.metering", "throughput.admission");
        bool Matches(string pattern, string name) => System.Text.RegularExpressions.Regex.IsMatch(name, pattern);

        Assert.True(Matches(permissions.Write, "throughput.metering"));
        Assert.True(Matches(permissions.Configure, "amq.gen-Xy1"));
        Assert.True(Matches(permissions.Read, "throughput.admission"));
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
