using System.Text.Json;
using System.Text;
using Throughput.Capacity;
using Throughput.Deployments;
using Throughput.Metering;
using Throughput.Nodes;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

/// <summary>Phase-split (Splitwise) pools and metering: each phase's pool never oversold, each token and each request counted once.</summary>
public sealed class SplitwiseSpecs
{
    static CapacityPool Pool(string region, ServingPhase phase, decimal capacity, decimal sold = 0) =>
        new(CapacityPool.StreamId("gpt-4o", region, phase), "gpt-4o", region, capacity, sold, 1) { Phase = phase };

    [Fact]
    public void A_split_region_is_one_pool_to_a_purchase_with_the_room_both_phases_have()
    {
        var regions = PhasePools.ByRegion([Pool("eastus", ServingPhase.Prompt, 10, sold: 2), Pool("eastus", ServingPhase.Generation, 6, sold: 2), Pool("westus", ServingPhase.Whole, 5)]);
        var eastus = regions.Single(p => p.Region == "eastus");
        Assert.Equal(("pool:gpt-4o:eastus", 4m), (eastus.Id, eastus.Free));
        Assert.Equal(2, eastus.Phases!.Count);
        Assert.Null(regions.Single(p => p.Region == "westus").Phases);
    }

    [Fact]
    public void A_split_region_with_one_phase_only_has_no_room()
    {
        var region = Assert.Single(PhasePools.ByRegion([Pool("eastus", ServingPhase.Prompt, 10)]));
        Assert.Equal(0, region.Free);
        Assert.Throws<Throughput.Http.RuleViolation>(() => PoolDecisions.Allocate(region, "gpt-4o", "eastus", "dep-1", 0.1m, Now));
    }

    [Fact]
    public void An_allocation_on_a_split_region_takes_the_same_PTUs_from_both_phases_and_more_than_either_has_free_is_refused()
    {
        var region = PhasePools.ByRegion([Pool("eastus", ServingPhase.Prompt, 10, sold: 2), Pool("eastus", ServingPhase.Generation, 6, sold: 2)]).Single();
        var events = PoolDecisions.Allocate(region, "gpt-4o", "eastus", "dep-1", 4, Now).SelectMany(e => PhasePools.ToPhases(e, region)).ToList();
        Assert.Equal([new PtusAllocated("pool:gpt-4o:eastus:prompt", "dep-1", 4, Now), new PtusAllocated("pool:gpt-4o:eastus:generation", "dep-1", 4, Now)], events);
        Assert.Throws<Throughput.Http.RuleViolation>(() => PoolDecisions.Allocate(region, "gpt-4o", "eastus", "dep-1", 4.1m, Now));
        Assert.Throws<InvalidOperationException>(() => PhasePools.ToPhases(new CapacityRemoved(region.Id, 1, Now), region).ToList());
    }

    [Fact]
    public void A_region_is_whole_or_split_never_both_in_use()
    {
        Assert.Throws<Throughput.Http.RuleViolation>(() => PhasePools.EnsureOneKind("gpt-4o", "eastus", ServingPhase.Prompt, 5, [Pool("eastus", ServingPhase.Whole, 3)]));
        Assert.Throws<Throughput.Http.RuleViolation>(() => PhasePools.EnsureOneKind("gpt-4o", "eastus", ServingPhase.Whole, 5, [Pool("eastus", ServingPhase.Generation, 0, sold: 1)]));
        PhasePools.EnsureOneKind("gpt-4o", "eastus", ServingPhase.Prompt, 5, [Pool("eastus", ServingPhase.Whole, 0)]); // an emptied whole pool may be split
        PhasePools.EnsureOneKind("gpt-4o", "eastus", ServingPhase.Whole, 0, [Pool("eastus", ServingPhase.Prompt, 3)]); // and emptying is always allowed
    }

    [Fact]
    public void A_phase_pool_opens_under_its_own_stream_with_its_phase()
    {
        var events = PoolDecisions.SetCapacity(null, "gpt-4o", "eastus", 8, Now, ServingPhase.Generation);
        Assert.Equal(new PoolOpened("pool:gpt-4o:eastus:generation", "gpt-4o", "eastus", Now, ServingPhase.Generation), events[0]);
        Assert.Equal(ServingPhase.Generation, CapacityPool.Create((PoolOpened)events[0]).Phase);
    }

    static MeteredRecord Half(ServingPhase phase, long prompt, long cached, long output, bool spilled = false) =>
        new("r", "dep-1", prompt, cached, output, spilled, 0, Now, Now, null, Phase: phase);

    [Fact]
    public void A_request_counts_once_from_its_prompt_half_and_each_half_brings_only_its_tokens()
    {
        var total = Half(ServingPhase.Prompt, 100, 20, 0).Counts + Half(ServingPhase.Generation, 0, 0, 7).Counts;
        Assert.Equal(new TokenCounts(1, 100, 20, 7, 0, 0, 0, 0), total);
        var spilled = Half(ServingPhase.Prompt, 100, 20, 0, spilled: true).Counts + Half(ServingPhase.Generation, 0, 0, 7, spilled: true).Counts;
        Assert.Equal(new TokenCounts(1, 100, 20, 7, 1, 100, 20, 7), spilled);
    }

    static ServingNode Node(ServingPhase phase) => new("node:n", [], [], 1, Phase: phase);

    [Theory]
    [InlineData(ServingPhase.Prompt, ServingPhase.Prompt, 100, 0, null)]
    [InlineData(ServingPhase.Generation, ServingPhase.Generation, 0, 7, null)]
    [InlineData(ServingPhase.Whole, ServingPhase.Whole, 100, 7, null)]
    [InlineData(ServingPhase.Prompt, ServingPhase.Prompt, 100, 7, "a prompt server reported 7 output tokens")]
    [InlineData(ServingPhase.Generation, ServingPhase.Generation, 100, 7, "a generation server reported 100 prompt tokens")]
    [InlineData(ServingPhase.Prompt, ServingPhase.Whole, 100, 0, "serves the prompt phase; the record says whole requests")]
    [InlineData(ServingPhase.Whole, ServingPhase.Generation, 0, 7, "serves whole requests; the record says the generation phase")]
    [InlineData(ServingPhase.Generation, ServingPhase.Prompt, 100, 0, "serves the generation phase; the record says the prompt phase")]
    public void A_record_is_its_nodes_phase_and_carries_only_that_phases_tokens(ServingPhase node, ServingPhase record, long prompt, long output, string? problem)
    {
        var found = Half(record, prompt, 0, output).PhaseProblemFrom(Node(node));
        if (problem is null) Assert.Null(found);
        else Assert.Contains(problem, found);
    }

    [Fact]
    public void Registering_a_node_with_a_phase_records_it_and_again_with_another_changes_it()
    {
        var registered = ServingNodes.Register(null, "node-a", new RegisterServingNode(["eastus"], null, ServingPhase.Prompt), Now);
        var node = ServingNode.Create((ServingNodeRegistered)registered.Single());
        Assert.Equal(ServingPhase.Prompt, node.Phase);
        Assert.Empty(ServingNodes.Register(node, "node-a", new RegisterServingNode(["eastus"], null, ServingPhase.Prompt), Now));
        Assert.Equal(ServingPhase.Generation, ((ServingNodeRegistered)ServingNodes.Register(node, "node-a", new RegisterServingNode(["eastus"], null, ServingPhase.Generation), Now).Single()).Phase);
    }

    const string Record = """{"recordId":"r1","deploymentId":"dep-1","requestId":"q","promptTokens":0,"cachedTokens":0,"outputTokens":7,"spilled":false,"estimatedTokens":0,"startedAt":"2026-11-22T10:00:00Z","finishedAt":"2026-11-22T10:00:01Z"PHASE}""";

    static MeteredRecord Read(string phase) => JsonSerializer.Deserialize<MeteringFrame>(Encoding.UTF8.GetBytes(
        """{"version":1,"producerId":"node-1","sequence":5,"sentAt":"2026-11-22T10:00:02Z","records":[""" + Record.Replace("PHASE", phase) + "]}"))!.Records[0];

    [Fact]
    public void The_phase_is_read_from_the_wire_absent_means_the_whole_request_and_anything_else_is_a_bad_record()
    {
        Assert.Equal(ServingPhase.Generation, Read(""","phase":"generation" """).Phase);
        Assert.Equal(ServingPhase.Prompt, Read(""","phase":"prompt" """).Phase);
        Assert.Equal((ServingPhase.Whole, null), (Read("").Phase, Read("").Problem));
        Assert.Equal(ServingPhase.Whole, Read(""","phase":null""").Phase);
        Assert.Contains("phase is neither", Read(""","phase":"decode" """).Problem);
        Assert.Contains("phase is neither", Read(""","phase":1""").Problem);
    }

    [Fact]
    public void A_record_written_back_keeps_its_phase_and_its_content_hash_tells_the_phases_apart()
    {
        var frame = JsonSerializer.Deserialize<MeteringFrame>(Encoding.UTF8.GetBytes(
            """{"version":1,"producerId":"node-1","sequence":5,"sentAt":"2026-11-22T10:00:02Z","records":[""" + Record.Replace("PHASE", ""","phase":"generation" """) + "]}"))!;
        Assert.Contains("\"phase\":\"generation\"", JsonSerializer.Serialize(frame));
        var whole = frame.Records[0] with { Phase = ServingPhase.Whole };
        Assert.NotEqual(AppliedBatches.ContentHash([whole]), AppliedBatches.ContentHash(frame.Records));
    }

    [Fact]
    public void Each_phase_is_served_against_its_own_tokens_a_deployment_placed_in_several_regions_in_proportion()
    {
        var model = Throughput.Catalog.ModelCatalog.Load(Path.Combine(SettingsTests.RepositoryRoot(), "src", "Throughput.Platform", "Catalog", "catalog.json")).Find("gpt-4o")!; // 2,500 per PTU, output weight 4
        var held = new Dictionary<string, decimal> { ["dep-1"] = 1, ["dep-2"] = 1 };
        var minutes = new Dictionary<string, (decimal, TokenCounts)>
        {
            ["dep-1"] = (1, new TokenCounts(3, 900, 100, 200, 0, 0, 0, 0)),
            ["dep-2"] = (2, new TokenCounts(1, 400, 0, 100, 0, 0, 0, 0)), // half of it is placed here
        };
        var prompt = PhaseUtilizations.Of(Pool("eastus", ServingPhase.Prompt, 4, sold: 2), model, held, minutes);
        Assert.Equal((10_000L, 1_000L, 0.1m, 0.5m), (prompt.CapacityTokensPerMinute, prompt.ServedTokens, prompt.ServedShare, prompt.SoldShare));
        var generation = PhaseUtilizations.Of(Pool("eastus", ServingPhase.Generation, 2, sold: 2), model, held, minutes);
        Assert.Equal((1_250L, 250L, 0.2m, 1m), (generation.CapacityTokensPerMinute, generation.ServedTokens, generation.ServedShare, generation.SoldShare));
    }
}
