using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;
using Throughput.Serving;
using Throughput.Tests.Serving;

namespace Throughput.Tests.Flywheel;

public sealed class FleetTests
{
    readonly ManualClock _clock = new();
    static readonly TimeSpan Iteration = TimeSpan.FromMilliseconds(25);

    AdmissionCache Cache(params (string Id, long TokensPerMinute)[] deployments)
    {
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = _clock, BurstShare = 1 });
        foreach (var (id, rate) in deployments)
            cache.Apply(new AdmissionLimitChanged(id, "t", "m", "r", AdmissionState.Open, rate, rate, 0, 0, false, 4, 1, 1, DateTimeOffset.UnixEpoch));
        return cache;
    }

    InferenceRequest Request(string deployment, int n, int prompt = 100, int output = 10) =>
        new($"{deployment}-{n}", deployment, prompt, 0, output, output, _clock.GetUtcNow());

    FleetStep Step(Fleet fleet)
    {
        var step = fleet.Step(_clock.GetUtcNow());
        _clock.Advance(Iteration);
        return step;
    }

    [Fact]
    public void A_request_waits_in_its_deployments_queue_until_the_bucket_admits_it_and_is_asked_again_only_after_the_retry_after()
    {
        var cache = Cache(("dep", 60_000)); // 1,000 a second, 60,000 burst
        var fleet = new Fleet(new FleetOptions { Nodes = 1, IterationTime = Iteration }, cache);
        fleet.Enqueue(Request("dep", 1, prompt: 1_000, output: 14_750)); // 1,000 + 4 × 14,750: the whole burst
        fleet.Enqueue(Request("dep", 2, prompt: 460, output: 10)); // costs 500: half a second of refill

        var first = Step(fleet);
        Assert.Single(first.Admitted);
        Assert.Equal(AdmissionOutcome.OverRate, Assert.Single(first.Refused).Admission.Outcome);
        Assert.Equal(1, fleet.Queued("dep"));

        var asked = 1;
        for (var i = 0; i < 30 && fleet.Queued("dep") == 1; i++) asked += Step(fleet).Refused.Count;

        Assert.Equal(0, fleet.Queued("dep"));
        Assert.Equal(1, asked); // slept through the retry-after instead of asking every iteration
    }

    [Fact]
    public void A_deployment_without_a_known_limit_is_not_served()
    {
        var fleet = new Fleet(new FleetOptions { IterationTime = Iteration }, Cache());
        fleet.Enqueue(Request("unknown", 1));

        var step = Step(fleet);

        Assert.Empty(step.Admitted);
        Assert.Equal(AdmissionOutcome.UnknownDeployment, Assert.Single(step.Refused).Admission.Outcome);
    }

    [Fact]
    public void Nothing_is_admitted_while_every_node_is_full_so_no_tokens_are_taken_for_work_the_gpus_cannot_start()
    {
        var cache = Cache(("dep", 6_000_000));
        var fleet = new Fleet(new FleetOptions { Nodes = 2, MaxSequencesPerNode = 3, IterationTime = Iteration }, cache);
        for (var n = 0; n < 10; n++) fleet.Enqueue(Request("dep", n, output: 1_000));

        var step = Step(fleet);

        Assert.Equal(6, step.Admitted.Count);
        Assert.Equal(4, fleet.Queued("dep"));
        Assert.Empty(step.Refused);
        Assert.Equal(3, fleet.Nodes[0].Running);
        Assert.Equal(3, fleet.Nodes[1].Running);
    }

    [Fact]
    public void A_finished_request_gives_the_bucket_back_its_estimate_minus_its_actual_cost()
    {
        var cache = Cache(("dep", 60_000));
        var fleet = new Fleet(new FleetOptions { Nodes = 1, IterationTime = Iteration }, cache);
        fleet.Enqueue(new InferenceRequest("r", "dep", 1_000, 0, MaxOutputTokens: 500, OutputTokens: 2, _clock.GetUtcNow()));

        var admitted = Assert.Single(Step(fleet).Admitted);
        Assert.Equal(3_000, admitted.Admission.EstimatedTokens);
        var finished = Step(fleet).Finished;

        Assert.Single(finished);
        var expected = 60_000 - 1_008 + 2 * Iteration.TotalSeconds * 1_000; // refilled for two iterations, then capped below
        Assert.Equal(Math.Min(60_000, expected), cache.Bucket("dep")!.Tokens, precision: 3);
    }

    [Fact]
    public void Arrivals_bring_the_backlog_at_once_then_the_offered_rate_of_weighted_tokens()
    {
        var start = _clock.GetUtcNow();
        var workload = new Workload("w", 1_000, 250, Jitter: 0);
        var arrivals = new Arrivals("dep", workload, offeredPerMinute: 120_000, backlogTokens: 20_000, outputWeight: 4, cachedDeduction: 1, start, seed: 1);

        var atStart = arrivals.Until(start).ToList();
        var afterAMinute = arrivals.Until(start + TimeSpan.FromMinutes(1)).ToList();

        Assert.Equal(10 + 1, atStart.Count); // 20,000 of backlog at 2,000 each, and the first of the steady arrivals
        Assert.Equal(60, afterAMinute.Count);
        Assert.All(atStart, r => Assert.Equal((1_000, 250, 250), (r.PromptTokens, r.OutputTokens, r.MaxOutputTokens)));
    }
}
