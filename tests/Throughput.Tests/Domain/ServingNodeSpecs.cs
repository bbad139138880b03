using Throughput.Metering;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class ServingNodeSpecs
{
    static ServingNode Registered(string? brokerUser = null) =>
        ServingNode.Create(new ServingNodeRegistered("node-a", ["eastus"], [], Now, brokerUser));

    [Fact]
    public void Given_no_node_when_registered_without_a_broker_user_then_the_producer_id_is_the_broker_user()
    {
        var events = ServingNodes.Register(null, "node-a", new RegisterServingNode(["eastus"], null), Now);
        Assert.Equal("node-a", Assert.IsType<ServingNodeRegistered>(Assert.Single(events)).BrokerUser);
    }

    [Fact]
    public void Given_a_node_when_registered_again_unchanged_then_nothing_happens() =>
        Assert.Empty(ServingNodes.Register(Registered("svc-a"), "node-a", new RegisterServingNode(["eastus"], [], "svc-a"), Now));

    [Fact]
    public void Given_a_node_when_its_broker_user_changes_then_it_is_registered_again()
    {
        var events = ServingNodes.Register(Registered("svc-a"), "node-a", new RegisterServingNode(["eastus"], [], "svc-b"), Now);
        var registered = Assert.IsType<ServingNodeRegistered>(Assert.Single(events));
        Assert.Equal("svc-b", registered.BrokerUser);
        Assert.Equal(["eastus"], registered.Regions);
        Assert.True(Registered("svc-a").Apply(registered).SentBy("svc-b"));
    }

    [Fact]
    public void A_node_registered_before_broker_users_were_recorded_answers_to_its_producer_id() =>
        Assert.True(Registered(brokerUser: null).SentBy("node-a"));

    [Theory]
    [InlineData(null)]
    [InlineData("svc-b")]
    [InlineData("SVC-A")]
    public void Only_the_registered_broker_user_is_the_node(string? sentBy) => Assert.False(Registered("svc-a").SentBy(sentBy));
}
