using Throughput.Flywheel.Batching;
using Throughput.Serving;

namespace Throughput.Tests.Flywheel;

public sealed class GpuNodeTests
{
    static readonly DateTimeOffset T0 = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);
    static readonly TimeSpan Iteration = TimeSpan.FromMilliseconds(25);

    static Sequence Sequence(string id, int prompt, int output, int cached = 0, string deployment = "dep") =>
        new(new InferenceRequest(id, deployment, prompt, cached, output, output, T0), default, T0);

    static Iteration Run(GpuNode node, int iteration) => node.Run(T0 + Iteration * iteration)!;

    [Fact]
    public void A_prompt_larger_than_the_budget_is_processed_in_chunks_and_its_last_chunk_yields_the_first_token()
    {
        var node = new GpuNode(tokenBudget: 1_000, maxSequences: 8, iterationTime: Iteration);
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
        var node = new GpuNode(tokenBudget: 100, maxSequences: 8, iterationTime: Iteration);
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
        var node = new GpuNode(tokenBudget: 4_096, maxSequences: 64, iterationTime: Iteration);
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
        var node = new GpuNode(tokenBudget: 4_096, maxSequences: 8, iterationTime: Iteration);
        node.Start(Sequence("c", prompt: 800, output: 2, cached: 600));

        var first = Run(node, 0);

        Assert.Equal(200, first.TokensUsed);
        var served = Assert.Single(first.Served);
        Assert.Equal(new ServedTokens("dep", 200, 600, 1), served);
    }

    [Fact]
    public void When_sequences_outnumber_the_budget_the_ones_that_wait_rotate()
    {
        var node = new GpuNode(tokenBudget: 3, maxSequences: 8, iterationTime: Iteration);
        var sequences = Enumerable.Range(0, 4).Select(n => Sequence($"r{n}", prompt: 10, output: 100, cached: 10)).ToList();
        foreach (var s in sequences) node.Start(s);

        for (var i = 0; i < 8; i++) Run(node, i);

        var generated = sequences.Select(s => s.Generated).ToArray();
        Assert.Equal([6, 6, 6, 6], generated); // 24 tokens of budget shared by four
    }

    [Fact]
    public void A_full_node_refuses_more_sequences()
    {
        var node = new GpuNode(tokenBudget: 100, maxSequences: 1, iterationTime: Iteration);
        node.Start(Sequence("a", 10, 10));

        Assert.False(node.HasRoom);
        Assert.Throws<InvalidOperationException>(() => node.Start(Sequence("b", 10, 10)));
    }
}

public sealed class SchedulingTests
{
    static readonly DateTimeOffset T0 = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);

    static Sequence Sequence(string id, int prompt, int output) =>
        new(new InferenceRequest(id, "dep", prompt, 0, output, output, T0), default, T0);

    static GpuNode Node(Scheduling scheduling, int budget) => new(scheduling, budget, maxSequences: 64, IterationCost.MistralOnA100.Of);

    [Fact]
    public void Whole_prompt_batching_prefills_a_waiting_prompt_whole_beside_every_decode_and_the_iteration_takes_as_long_as_the_prompt()
    {
        var node = Node(Scheduling.WholePrompt, budget: 4_096);
        var chat = Sequence("chat", prompt: 10, output: 50);
        node.Start(chat);
        node.Run(T0);
        node.Start(Sequence("digest", prompt: 3_000, output: 5));

        var iteration = node.Run(T0.AddSeconds(1))!;

        Assert.Equal(3_000, iteration.Work.PrefillTokens);
        Assert.Equal(1, iteration.Work.DecodeSequences);
        Assert.Equal(2, chat.Generated); // the chat's token came, a quarter of a second late
        Assert.True(iteration.Duration > TimeSpan.FromMilliseconds(200), $"{iteration.Duration}");
    }

    [Fact]
    public void Whole_prompt_batching_takes_waiting_prompts_while_they_fit_the_batch_limit_and_always_one()
    {
        var node = Node(Scheduling.WholePrompt, budget: 1_000);
        foreach (var (id, prompt) in new[] { ("a", 600), ("b", 300), ("c", 400) }) node.Start(Sequence(id, prompt, 3));
        Assert.Equal(900, node.Run(T0)!.Work.PrefillTokens); // a and b; c waits

        var big = Node(Scheduling.WholePrompt, budget: 1_000);
        big.Start(Sequence("huge", 5_000, 3));
        Assert.Equal(5_000, big.Run(T0)!.Work.PrefillTokens); // one prompt larger than the limit still goes whole
    }

    [Fact]
    public void Flywheel_keeps_every_iteration_within_its_budget_so_iterations_take_alike_times()
    {
        var node = Node(Scheduling.Flywheel, budget: 256);
        node.Start(Sequence("chat", prompt: 10, output: 200));
        var at = T0;
        var durations = new List<TimeSpan>();
        for (var i = 0; i < 100; i++)
        {
            if (i % 10 == 0) node.Start(Sequence($"digest{i}", prompt: 3_000, output: 5));
            var iteration = node.Run(at)!;
            Assert.True(iteration.TokensUsed <= 256);
            durations.Add(iteration.Duration);
            at = iteration.End;
        }
        Assert.True(durations.Max() < durations.Min() * 1.2, $"{durations.Min()} .. {durations.Max()}");
    }
}

public sealed class IterationCostTests
{
    static readonly IterationCost Cost = IterationCost.MistralOnA100;

    [Fact]
    public void A_decode_step_at_small_batch_is_bound_by_reading_the_weights()
    {
        var step = Cost.Of(new IterationWork().AddDecode(500));

        // 14.5 GB of weights at 70 % of 2,039 GB/s, plus a millisecond of overhead.
        Assert.InRange(step.TotalMilliseconds, 10.5, 11.7);
        Assert.Equal(step.TotalMilliseconds, Cost.Of(new IterationWork().AddDecode(500).AddDecode(500)).TotalMilliseconds, 1);
    }

    [Fact]
    public void Prompt_tokens_make_an_iteration_compute_bound_and_it_grows_with_them()
    {
        var chunk = Cost.Of(new IterationWork().AddChunk(256, 0));
        var whole = Cost.Of(new IterationWork().AddChunk(3_000, 0));

        // 2 × 7.24B FLOPs per token at 55 % of 312 TFLOPS: about 84 µs a token, a little more with attention.
        Assert.InRange(chunk.TotalMilliseconds, 22, 25);
        Assert.InRange(whole.TotalMilliseconds, 250, 290);
        Assert.True(Cost.Of(new IterationWork().AddChunk(256, 2_000)) > chunk); // a later chunk attends to the prompt before it
    }

    [Fact]
    public void Long_contexts_cost_memory_a_decode_step_reads_every_sequences_cache()
    {
        var shortContexts = Cost.Of(Enumerable.Range(0, 100).Aggregate(new IterationWork(), (w, _) => w.AddDecode(100)));
        var longContexts = Cost.Of(Enumerable.Range(0, 100).Aggregate(new IterationWork(), (w, _) => w.AddDecode(4_000)));

        // 100 × 4,000 tokens × 128 KiB of keys and values is 52 GB more to read.
        Assert.True(longContexts > shortContexts * 3, $"{shortContexts} → {longContexts}");
        Assert.Equal(TimeSpan.Zero, Cost.Of(new IterationWork()));
    }
}
