using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;

namespace Throughput.Tests.Flywheel;

public sealed class AdapterSlotsTests
{
    [Fact]
    public void A_node_loads_an_adapter_once_while_it_is_held_and_evicts_the_least_recently_used_for_a_cold_one()
    {
        var slots = new AdapterSlots(capacity: 2);

        Assert.True(slots.Use("a"));
        Assert.True(slots.Use("b"));
        Assert.False(slots.Use("a")); // held: no load; "a" is now the most recently used
        Assert.True(slots.Use("c")); // full: "b", the least recently used, goes

        Assert.True(slots.Holds("a"));
        Assert.False(slots.Holds("b"));
        Assert.True(slots.Holds("c"));
        Assert.Equal((3L, 1L, 2), (slots.Loads, slots.Evictions, slots.Held));
        Assert.True(slots.Use("b")); // cold again
        Assert.False(slots.Holds("a"));
    }
}

public sealed class AdapterCostTests
{
    static readonly DateTimeOffset T0 = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);
    static readonly IterationCost Cost = IterationCost.MistralOnA100;

    static Sequence Sequence(string id, string adapter, int prompt = 100, int output = 20) =>
        new(new InferenceRequest(id, "set", prompt, 0, output, output, T0) { AdapterId = adapter }, default, T0);

    [Fact]
    public void A_rank_16_adapter_of_Mistral_7B_is_27_MB_and_a_cold_one_takes_about_a_millisecond_over_PCIe()
    {
        // q, k, v, o in 32 layers: 16 × 32 × (2 × (4,096 + 4,096) + 2 × (4,096 + 1,024)) parameters, 2 bytes each.
        Assert.Equal(27_262_976, Cost.AdapterBytes);
        Assert.InRange(Cost.LoadTime(1).TotalMilliseconds, 1.05, 1.15); // at 25 GB/s
        Assert.Equal(Cost.LoadTime(1) * 3, Cost.LoadTime(3));
    }

    [Fact]
    public void A_cold_adapter_costs_its_iteration_the_load_in_series_and_adapters_already_held_cost_almost_nothing()
    {
        var chunk = new IterationWork().AddChunk(512, 0);

        var plain = Cost.Of(chunk);
        var held = Cost.Of(chunk.WithAdapters(tokens: 512, inBatch: 1, loaded: 0));
        var cold = Cost.Of(chunk.WithAdapters(tokens: 512, inBatch: 1, loaded: 1));

        Assert.Equal(held + Cost.LoadTime(1), cold);
        // The adapter's arithmetic is 0.19 % of the base model's per token (S-LoRA and Punica: close to the base model).
        Assert.InRange(held / plain, 1.0, 1.005);
    }

    [Fact]
    public void Many_distinct_adapters_in_a_decode_batch_add_their_weights_to_what_the_iteration_reads()
    {
        var decode = Enumerable.Range(0, 200).Aggregate(new IterationWork(), (w, _) => w.AddDecode(1_000));

        var one = Cost.Of(decode.WithAdapters(tokens: 200, inBatch: 1, loaded: 0));
        var many = Cost.Of(decode.WithAdapters(tokens: 200, inBatch: 200, loaded: 0));

        // 199 more adapters of 27 MB read at 70 % of 2,039 GB/s: about 3.8 ms more.
        Assert.InRange((many - one).TotalMilliseconds, 3.6, 4.0);
    }

    [Fact]
    public void A_node_pays_the_load_in_the_first_iteration_that_uses_a_cold_adapter_and_not_after_while_it_holds_it()
    {
        var node = new GpuNode(Scheduling.Flywheel, tokenBudget: 512, maxSequences: 4, Cost.Of) { Adapters = new AdapterSlots(4) };
        node.Start(Sequence("r1", "legal"));
        node.Start(Sequence("r2", "legal"));
        node.Start(Sequence("r3", "support"));

        var first = node.Run(T0)!;
        var second = node.Run(T0 + first.Duration)!;

        Assert.Equal((2, 2), (first.Work.AdaptersInBatch, first.Work.AdaptersLoaded));
        Assert.Equal(300, first.Work.AdapterTokens); // three prompts of 100
        Assert.Equal((2, 0, 3), (second.Work.AdaptersInBatch, second.Work.AdaptersLoaded, second.Work.AdapterTokens)); // three decodes
        Assert.Equal(Cost.Of(first.Work with { AdaptersLoaded = 0 }) + Cost.LoadTime(2), first.Duration);
        Assert.Equal(2, node.Adapters!.Loads);
    }

    [Fact]
    public void A_node_without_adapter_slots_costs_its_iterations_as_before()
    {
        var node = new GpuNode(Scheduling.Flywheel, tokenBudget: 512, maxSequences: 4, Cost.Of);
        node.Start(Sequence("r1", "legal"));

        var iteration = node.Run(T0)!;

        Assert.Equal((0, 0), (iteration.Work.AdapterTokens, iteration.Work.AdaptersLoaded));
        Assert.Equal(Cost.Of(new IterationWork().AddChunk(100, 0)), iteration.Duration);
    }

    [Fact]
    public void The_load_is_skewed_over_the_adapters_as_Zipf_says_and_repeats_with_its_seed()
    {
        string[] adapters = [.. Enumerable.Range(0, 100).Select(i => $"ft-{i}")];
        var popularity = new AdapterPopularity(adapters, exponent: 1, seed: 7);

        var drawn = Enumerable.Range(0, 20_000).Select(_ => popularity.Next()).ToList();
        var counts = drawn.GroupBy(a => a).ToDictionary(g => g.Key, g => g.Count());

        // The first is asked 1 / H(100) = 19 % of the time, the second half as often.
        Assert.InRange(counts["ft-0"] / 20_000.0, 0.18, 0.205);
        Assert.InRange(counts["ft-0"] / (double)counts["ft-1"], 1.8, 2.2);
        Assert.True(counts.Count > 90);
        var again = new AdapterPopularity(adapters, exponent: 1, seed: 7);
        Assert.Equal(drawn.Take(50), Enumerable.Range(0, 50).Select(_ => again.Next()));
    }
}
