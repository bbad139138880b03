using Throughput.Serving;

namespace Throughput.Flywheel.Batching;

/// <summary>
/// A phase-split (Splitwise) fleet: prompt nodes run prompts only (chunked by the Flywheel budget, each ending by sampling
/// the first token), then each request's KV cache crosses the interconnect to a generation node, which only decodes.
/// Each phase batches on its own, on its own GPU kind.
/// </summary>
public sealed record PhaseSplitOptions
{
    public int PromptNodes { get; init; } = 1;

    public int GenerationNodes { get; init; } = 2;

    /// <summary>
    /// NVIDIA H100-SXM5: 989 TFLOPS dense BF16, 3.35 TB/s HBM3 (NVIDIA's datasheet), at the A100's reachable shares. Prompts
    /// are compute-bound, so Splitwise puts them on the newest GPUs.
    /// </summary>
    public static readonly GpuKind H100 = new("H100-SXM", 989e12, 3.35e12, ComputeEfficiency: 0.55, MemoryEfficiency: 0.70, TimeSpan.FromMilliseconds(1));

    public IterationCost PromptCost { get; init; } = new(H100, ModelShape.Mistral7B);

    /// <summary>Decoding is memory-bound: the older, cheaper A100 serves it nearly as well.</summary>
    public IterationCost GenerationCost { get; init; } = IterationCost.MistralOnA100;

    /// <summary>Prompt tokens per prompt-node iteration.</summary>
    public int PromptBudget { get; init; } = 4096;

    /// <summary>Sequences a generation node decodes at once (its KV cache memory: 256 of about 1,000 tokens is 34 GB for Mistral-7B).</summary>
    public int GenerationSequences { get; init; } = 256;

    /// <summary>A fixed latency per KV-cache transfer, plus its bytes over <see cref="LinkBytesPerSecond"/>.</summary>
    public TimeSpan TransferLatency { get; init; } = TimeSpan.FromMilliseconds(1);

    /// <summary>The interconnect between the phases: 200 Gb/s InfiniBand, 25 GB/s.</summary>
    public double LinkBytesPerSecond { get; init; } = 25e9;

    public TimeSpan TransferOf(int promptTokens) =>
        TransferLatency + TimeSpan.FromSeconds(promptTokens * GenerationCost.Model.KvBytesPerToken / LinkBytesPerSecond);

    /// <summary>Prompt tokens a minute one prompt node processes at saturation: full chunks back to back.</summary>
    public double PromptTokensPerMinute => PromptBudget / PromptCost.Of(new IterationWork().AddChunk(PromptBudget, 0)).TotalMinutes;

    /// <summary>Output tokens a minute one generation node decodes at saturation, each sequence holding <paramref name="context"/> tokens.</summary>
    public double OutputTokensPerMinute(long context)
    {
        var work = new IterationWork();
        for (var i = 0; i < GenerationSequences; i++) work = work.AddDecode(context);
        return GenerationSequences / GenerationCost.Of(work).TotalMinutes;
    }
}

/// <summary>
/// One half of a request as a node of its phase meters it: a prompt node its prompt and cached tokens, a generation node
/// all its output tokens (with <see cref="TimePerOutputToken"/>, the mean time between them there).
/// </summary>
public sealed record PhaseHalf(bool Prompt, int Node, InferenceRequest Request, Admission Admission, DateTimeOffset StartedAt, DateTimeOffset FinishedAt,
    TimeSpan TimePerOutputToken = default);

/// <summary>
/// Drives a <see cref="PhaseSplitOptions"/> fleet: requests wait per deployment until the <see cref="AdmissionCache"/>
/// admits them (on arrival, as a prompt server's front end would), prefill on the least busy prompt node, wait out the
/// transfer, then decode on the least busy generation node with room. <see cref="Step"/> returns each half as it ends, for
/// its node to meter. Pure apart from the cache's clock.
/// </summary>
public sealed class PhaseSplitFleet
{
    static readonly TimeSpan UnavailableRetry = TimeSpan.FromSeconds(1);

    readonly PhaseSplitOptions _options;
    readonly AdmissionCache _admission;
    readonly GpuNode[] _prompt;
    readonly GpuNode[] _generation;
    readonly DateTimeOffset[] _promptFreeAt;
    readonly DateTimeOffset[] _generationFreeAt;
    readonly Dictionary<string, (Queue<InferenceRequest> Waiting, DateTimeOffset RetryAt)> _lanes = new(StringComparer.Ordinal);
    readonly List<(DateTimeOffset ReadyAt, InferenceRequest Request, Admission Admission)> _transfers = [];
    readonly Dictionary<Sequence, InferenceRequest> _requests = []; // what each running sequence was asked, whole

    public PhaseSplitFleet(PhaseSplitOptions options, AdmissionCache admission)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.PromptNodes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.GenerationNodes, 1);
        _options = options;
        _admission = admission;
        // A prompt node's sequences end with their first token; a generation node's budget always covers every sequence.
        _prompt = [.. Enumerable.Range(0, options.PromptNodes).Select(_ => new GpuNode(Scheduling.Flywheel, options.PromptBudget, 1024, options.PromptCost.Of))];
        _generation = [.. Enumerable.Range(0, options.GenerationNodes).Select(_ => new GpuNode(Scheduling.Flywheel, options.GenerationSequences + 1, options.GenerationSequences, options.GenerationCost.Of))];
        _promptFreeAt = new DateTimeOffset[_prompt.Length];
        _generationFreeAt = new DateTimeOffset[_generation.Length];
        Array.Fill(_promptFreeAt, DateTimeOffset.MinValue);
        Array.Fill(_generationFreeAt, DateTimeOffset.MinValue);
        PromptBusy = new TimeSpan[_prompt.Length];
        GenerationBusy = new TimeSpan[_generation.Length];
        PromptTokens = new long[_prompt.Length];
        OutputTokens = new long[_generation.Length];
    }

    /// <summary>Time each node spent in iterations.</summary>
    public TimeSpan[] PromptBusy { get; }

    public TimeSpan[] GenerationBusy { get; }

    /// <summary>Prompt tokens each prompt node processed (cached ones are not processed), and output tokens each generation node decoded.</summary>
    public long[] PromptTokens { get; }

    public long[] OutputTokens { get; }

    public int InTransfer => _transfers.Count;

    public int Pending => _lanes.Values.Sum(l => l.Waiting.Count) + _transfers.Count + _prompt.Sum(n => n.Running) + _generation.Sum(n => n.Running);

    public void Enqueue(InferenceRequest request)
    {
        if (!_lanes.TryGetValue(request.DeploymentId, out var lane)) _lanes[request.DeploymentId] = lane = (new Queue<InferenceRequest>(), DateTimeOffset.MinValue);
        lane.Waiting.Enqueue(request);
    }

    /// <summary>Runs every iteration that starts by <paramref name="at"/>, hands over what finished its prompt, admits, and starts transfers that arrived.</summary>
    public IReadOnlyList<PhaseHalf> Step(DateTimeOffset at)
    {
        var halves = new List<PhaseHalf>();
        for (var n = 0; n < _prompt.Length; n++)
            foreach (var iteration in Run(_prompt[n], ref _promptFreeAt[n], at))
            {
                PromptBusy[n] += iteration.Duration;
                foreach (var part in iteration.Parts) PromptTokens[n] += part.PromptTokens;
                foreach (var done in iteration.Finished)
                {
                    _requests.Remove(done, out var request);
                    halves.Add(new PhaseHalf(true, n, request!, done.Admission, done.AdmittedAt, iteration.End));
                    _transfers.Add((iteration.End + _options.TransferOf(request!.PromptTokens), request, done.Admission));
                }
            }
        for (var n = 0; n < _generation.Length; n++)
            foreach (var iteration in Run(_generation[n], ref _generationFreeAt[n], at))
            {
                GenerationBusy[n] += iteration.Duration;
                foreach (var part in iteration.Parts) OutputTokens[n] += part.GeneratedTokens;
                foreach (var done in iteration.Finished)
                {
                    _requests.Remove(done, out var request);
                    halves.Add(Completed(n, request!, done.Admission, done.AdmittedAt, iteration.End, done.TimePerOutputToken));
                }
            }

        // Transfers that arrived go to the least busy generation node with room; the rest wait on the prompt side.
        _transfers.Sort((a, b) => a.ReadyAt.CompareTo(b.ReadyAt));
        while (_transfers.Count > 0 && _transfers[0].ReadyAt <= at)
        {
            var (readyAt, request, admission) = _transfers[0];
            var rest = request.OutputTokens - 1; // the first token was sampled by the prompt node
            var node = LeastBusy(_generation, out var index);
            if (node is null) break;
            _transfers.RemoveAt(0);
            if (rest <= 0)
            {
                halves.Add(Completed(index, request, admission, readyAt, readyAt, TimeSpan.Zero));
                continue;
            }
            // The whole prompt arrives in the KV cache: the generation node only decodes.
            var decoding = new Sequence(request with { CachedTokens = request.PromptTokens, OutputTokens = rest }, admission, readyAt);
            _requests[decoding] = request;
            node.Start(decoding);
            if (_generationFreeAt[index] < readyAt) _generationFreeAt[index] = readyAt;
        }
        Admit(at);
        return halves;
    }

    /// <summary>A request's generation half: all its output tokens (the first, sampled by the prompt node, among them), from the node that completed it.</summary>
    PhaseHalf Completed(int node, InferenceRequest request, Admission admission, DateTimeOffset arrivedAt, DateTimeOffset at, TimeSpan perToken)
    {
        _admission.Complete(admission, request.PromptTokens, request.CachedTokens, request.OutputTokens);
        return new PhaseHalf(false, node, request, admission, arrivedAt, at, perToken);
    }

    static List<Iteration> Run(GpuNode node, ref DateTimeOffset freeAt, DateTimeOffset at)
    {
        var ran = new List<Iteration>();
        var start = freeAt == DateTimeOffset.MinValue ? at : freeAt;
        while (start <= at && node.Run(start) is { } iteration)
        {
            ran.Add(iteration);
            start = iteration.End;
        }
        freeAt = start > at ? start : at;
        return ran;
    }

    void Admit(DateTimeOffset at)
    {
        foreach (var (deploymentId, lane) in _lanes.ToList())
        {
            var retryAt = lane.RetryAt;
            while (retryAt <= at && lane.Waiting.Count > 0 && LeastBusy(_prompt, out _) is { } node)
            {
                var request = lane.Waiting.Peek();
                var admission = _admission.TryAdmit(deploymentId, request.PromptTokens, request.CachedTokens, request.MaxOutputTokens);
                if (!admission.IsAdmitted)
                {
                    retryAt = at + (admission.RetryAfterMs > 0 ? TimeSpan.FromMilliseconds(admission.RetryAfterMs) : UnavailableRetry);
                    break;
                }
                lane.Waiting.Dequeue();
                // On the prompt node the request ends with its first token.
                var prompting = new Sequence(request with { OutputTokens = 1 }, admission, at);
                _requests[prompting] = request;
                node.Start(prompting);
            }
            _lanes[deploymentId] = (lane.Waiting, retryAt);
        }
    }

    static GpuNode? LeastBusy(GpuNode[] nodes, out int index)
    {
        GpuNode? best = null;
        index = -1;
        for (var i = 0; i < nodes.Length; i++)
        {
            if (nodes[i].HasRoom && (best is null || nodes[i].Running < best.Running))
            {
                best = nodes[i];
                index = i;
            }
        }
        return best;
    }
}
