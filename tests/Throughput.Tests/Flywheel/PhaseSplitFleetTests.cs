using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;
using Throughput.Serving;

namespace Throughput.Tests.Flywheel;

/// <summary>The reference batcher's phase-split mode: each request prefilled on a prompt node, moved, decoded on a generation node.</summary>
public sealed class PhaseSplitFleetTests
{
    static readonly DateTimeOffset Start = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Every_request_has_one_prompt_half_and_one_generation_half_after_its_transfer_and_its_tokens_are_served_once()
    {
        var clock = new SimulatedClock(Start);
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = clock });
        var options = new PhaseSplitOptions { PromptNodes = 1, GenerationNodes = 2 };
        var fleet = new PhaseSplitFleet(options, cache);
        List<Arrivals> arrivals = [];
        foreach (var (workload, n) in new[] { Workload.DocumentCreation.Scaled(0.1), Workload.Summarization, Workload.Chat.Scaled(0.1) }.Select((w, n) => (w, n)))
        {
            cache.Apply(new AdmissionLimitChanged($"dep-{n}", "t", "gpt-4o-mini", "r", AdmissionState.Open, 300_000, 300_000, 0, 0, false, 4, 1, 1, Start));
            arrivals.Add(new Arrivals($"dep-{n}", workload, 300_000, 0, 4, 1, Start, seed: n));
        }
        List<PhaseHalf> halves = [];
        List<InferenceRequest> offered = [];
        var end = Start.AddSeconds(20);
        for (var at = Start; at <= end.AddSeconds(30) && (at <= end || fleet.Pending > 0); at += TimeSpan.FromMilliseconds(5))
        {
            clock.Advance(at - clock.GetUtcNow());
            if (at <= end)
                foreach (var source in arrivals)
                    foreach (var request in source.Until(at))
                    {
                        offered.Add(request);
                        fleet.Enqueue(request);
                    }
            halves.AddRange(fleet.Step(at));
        }

        Assert.Equal(0, fleet.Pending);
        Assert.True(offered.Count > 100, $"only {offered.Count} requests");
        foreach (var request in offered)
        {
            var prompt = Assert.Single(halves, h => h.Prompt && h.Request.RequestId == request.RequestId);
            var generation = Assert.Single(halves, h => !h.Prompt && h.Request.RequestId == request.RequestId);
            Assert.True(generation.StartedAt >= prompt.FinishedAt + options.TransferOf(request.PromptTokens), $"{request.RequestId} decoded before its KV cache arrived");
        }
        // Prompt nodes process every prompt token not cached; generation nodes decode every output token but the first,
        // which each prompt node sampled at the end of its prompt.
        Assert.Equal(offered.Sum(r => (long)r.PromptTokens - r.CachedTokens), fleet.PromptTokens.Sum());
        Assert.Equal(offered.Sum(r => (long)r.OutputTokens - 1), fleet.OutputTokens.Sum());
        Assert.All(fleet.GenerationBusy, busy => Assert.True(busy > TimeSpan.Zero));
    }
}
