using Throughput.Flywheel.Batching;
using Throughput.Serving;

namespace Throughput.Tests.Flywheel;

public sealed class GpuNodeTests
{
    static readonly DateTimeOffset T0 = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);
    static readonly TimeSpan Iteration = TimeSpan.FromMilliseconds(25);

    static Sequence Sequence(string id, int prompt, int output, int cached = 0, string deployment = "dep") =>
        new(new InferenceRequest(id, deployment, prompt, cached, output, output, T0), default, T0);

    static Iteration Run(GpuNode node, int iteration) => node.Run(T0 + Iteration * iteration, Iteration);

    [Fact]
    public void A_prompt_larger_than_the_budget_is_processed_in_chunks_and_its_last_chunk_yields_the_first_token()
    {
        var node = new GpuNode(tokenBudget: 1_000, maxSequences: 8);
        var summary = Sequence("s", prompt: 2_500, output: 3);
        node.Start(summary);

        Assert.Equal(1_000, Run(node, 0).TokensUsed);
        Assert.Equal(1_000, Run(node, 1).TokensUsed);
        var third = Run(node, 2);

        Assert.Equal(500, third.TokensUsed);
        Assert.Equal(2_500, summary.PromptDone);
        Assert.Equal(1, summary.Generated);
        Assert.Equal(T0 + Iteration * 3, summary.FirstTokenAt);
    }

    [Fact]
    public void Generation_goes_first_and_prompt_chunks_fill_what_is_left_so_a_long_prompt_never_stalls_generation()
    {
        var node = new GpuNode(tokenBudget: 100, maxSequences: 8);
        var chat = Sequence("chat", prompt: 10, output: 50);
        node.Start(chat);
        Run(node, 0); // prefill and first token
        var document = Sequence("doc", prompt: 1_000, output: 5);
        node.Start(document);

        for (var i = 1; i <= 10; i++)
        {
            var iteration = Run(node, i);
            Assert.Equal(100, iteration.TokensUsed);
            Assert.Equal(i + 1, chat.Generated); // one token every iteration, while the long prompt is chunked behind it
        }
        Assert.Equal(990, document.PromptDone);
    }

    [Fact]
    public void Every_running_sequence_gets_one_token_per_iteration_so_time_per_token_is_the_iteration_time()
    {
        var node = new GpuNode(tokenBudget: 4_096, maxSequences: 64);
        var sequences = Enumerable.Range(0, 20).Select(n => Sequence($"r{n}", prompt: 100 + n * 300, output: 40)).ToList();
        foreach (var s in sequences) node.Start(s);
        var finished = new List<Sequence>();

        for (var i = 0; i < 60 && finished.Count < sequences.Count; i++) finished.AddRange(Run(node, i).Finished);

        Assert.Equal(sequences.Count, finished.Count);
        Assert.All(finished, s => Assert.Equal(Iteration, s.TimePerOutputToken));
        Assert.Equal(0, node.Running);
    }

    [Fact]
    public void A_cached_prefix_costs_the_gpu_nothing()
    {
        var node = new GpuNode(tokenBudget: 4_096, maxSequences: 8);
        node.Start(Sequence("c", prompt: 800, output: 2, cached: 600));

        var first = Run(node, 0);

        Assert.Equal(200, first.TokensUsed);
        var served = Assert.Single(first.Served);
        Assert.Equal(new ServedTokens("dep", 200, 600, 1), served);
    }

    [Fact]
    public void When_sequences_outnumber_the_budget_the_ones_that_wait_rotate()
    {
        var node = new GpuNode(tokenBudget: 3, maxSequences: 8);
        var sequences = Enumerable.Range(0, 4).Select(n => Sequence($"r{n}", prompt: 10, output: 100, cached: 10)).ToList();
        foreach (var s in sequences) node.Start(s);

        for (var i = 0; i < 8; i++) Run(node, i);

        var generated = sequences.Select(s => s.Generated).ToArray();
        Assert.Equal([6, 6, 6, 6], generated); // 24 tokens of budget shared by four
    }

    [Fact]
    public void A_full_node_refuses_more_sequences()
    {
        var node = new GpuNode(tokenBudget: 100, maxSequences: 1);
        node.Start(Sequence("a", 10, 10));

        Assert.False(node.HasRoom);
        Assert.Throws<InvalidOperationException>(() => node.Start(Sequence("b", 10, 10)));
    }
}
