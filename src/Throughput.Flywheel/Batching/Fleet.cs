using Throughput.Serving;

namespace Throughput.Flywheel.Batching;

/// <summary>
/// The simulated fleet: how many GPU nodes, how each composes an iteration and how long one takes. With a
/// <see cref="Cost"/> an iteration takes what the cost model says of its work; without one, always <see cref="IterationTime"/>
/// (the drills, which want short requests on a steady clock).
/// </summary>
public sealed record FleetOptions
{
    public int Nodes { get; init; } = 2;

    public Scheduling Scheduling { get; init; } = Scheduling.Flywheel;

    /// <summary>Flywheel: tokens per iteration. Whole-prompt: prompt tokens batched per iteration.</summary>
    public int TokenBudget { get; init; } = 4096;

    public TimeSpan IterationTime { get; init; } = TimeSpan.FromMilliseconds(25);

    public IterationCost? Cost { get; init; }

    public int MaxSequencesPerNode { get; init; } = 1024;

    /// <summary>
    /// Adapters each node holds in GPU memory (least recently used evicted); 0: the nodes serve no adapters. At least
    /// <see cref="MaxSequencesPerNode"/>, so every running request's adapter fits at once.
    /// </summary>
    public int AdapterSlots { get; init; }

    /// <summary>
    /// How long an iteration of some work takes. A Flywheel node runs at a fixed cadence: no iteration is shorter than one
    /// with its whole budget in prompt tokens, so every running request gets one token per period whatever else is in the
    /// batch (the GPU idles out what a light iteration leaves, which a fleet sold near its capacity seldom has).
    /// </summary>
    public Func<IterationWork, TimeSpan> Duration
    {
        get
        {
            if (Cost is not { } cost) return _ => IterationTime;
            if (Scheduling != Scheduling.Flywheel) return cost.Of;
            var period = cost.Of(new IterationWork().AddChunk(TokenBudget, 0));
            return work => work.IsEmpty ? TimeSpan.Zero : TimeSpan.FromTicks(Math.Max(period.Ticks, cost.Of(work).Ticks));
        }
    }
}

/// <summary>A request refused admission for now.</summary>
public readonly record struct Refusal(string DeploymentId, Admission Admission);

/// <summary>A node's iteration, and which node ran it.</summary>
public readonly record struct NodeIteration(int Node, Iteration Iteration);

/// <summary>What one step of the fleet did: the admissions, the refusals, and the iterations the nodes ran up to the step's time.</summary>
public sealed record FleetStep(
    DateTimeOffset At, IReadOnlyList<Sequence> Admitted, IReadOnlyList<Refusal> Refused, IReadOnlyList<NodeIteration> Iterations, int Nodes)
{
    public IEnumerable<Sequence> Finished => Iterations.SelectMany(i => i.Iteration.Finished);

    /// <summary>Deployments whose bucket would have admitted more but whose requests waited for room on the GPUs.</summary>
    public IReadOnlyList<string> WaitedForGpu { get; init; } = [];
}

/// <summary>
/// One serving process: requests wait in a queue per deployment until the shared <see cref="AdmissionCache"/> admits them,
/// then run on the least busy node. A refused deployment is asked again only after its retry-after, as a client honouring
/// <c>retry-after-ms</c> would. Each node runs iterations back to back while it has work, each as long as its duration;
/// <see cref="Step"/> runs every iteration that starts by the given time, then admits, so what is admitted at a time joins
/// the next iteration after it. Pure apart from the cache's clock.
/// </summary>
public sealed class Fleet
{
    static readonly TimeSpan UnavailableRetry = TimeSpan.FromSeconds(1);

    readonly FleetOptions _options;
    readonly AdmissionCache _admission;
    readonly GpuNode[] _nodes;
    readonly DateTimeOffset[] _freeAt; // when each node's last iteration ends, or the last step's time while it is idle
    readonly List<Lane> _lanes = [];
    readonly Dictionary<string, Lane> _byDeployment = new(StringComparer.Ordinal);

    public Fleet(FleetOptions options, AdmissionCache admission)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Nodes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.TokenBudget, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.IterationTime, TimeSpan.Zero);
        // Decoding goes first; with fewer sequences than tokens per iteration it can never take the whole budget and starve prompts.
        if (options.Scheduling == Scheduling.Flywheel) ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(options.MaxSequencesPerNode, options.TokenBudget);
        // Fewer adapter slots than sequences would need admission by adapter, which the model leaves out.
        if (options.AdapterSlots > 0) ArgumentOutOfRangeException.ThrowIfLessThan(options.AdapterSlots, options.MaxSequencesPerNode);
        _options = options;
        _admission = admission;
        var duration = options.Duration;
        _nodes =
        [
            .. Enumerable.Range(0, options.Nodes).Select(_ => new GpuNode(options.Scheduling, options.TokenBudget, options.MaxSequencesPerNode, duration)
            {
                Adapters = options.AdapterSlots > 0 ? new AdapterSlots(options.AdapterSlots) : null,
            }),
        ];
        _freeAt = new DateTimeOffset[options.Nodes];
        Array.Fill(_freeAt, DateTimeOffset.MinValue);
    }

    public IReadOnlyList<GpuNode> Nodes => _nodes;

    public FleetOptions Options => _options;

    public void Enqueue(InferenceRequest request)
    {
        if (!_byDeployment.TryGetValue(request.DeploymentId, out var lane))
        {
            _byDeployment.Add(request.DeploymentId, lane = new Lane(request.DeploymentId));
            _lanes.Add(lane);
        }
        lane.Waiting.Enqueue(request);
    }

    /// <summary>Requests of a deployment waiting for admission.</summary>
    public int Queued(string deploymentId) => _byDeployment.TryGetValue(deploymentId, out var lane) ? lane.Waiting.Count : 0;

    /// <summary>
    /// Runs every iteration that starts by <paramref name="at"/>, reconciles the requests they finished with the cache, then
    /// admits what the cache allows.
    /// </summary>
    public FleetStep Step(DateTimeOffset at)
    {
        var iterations = new List<NodeIteration>();
        for (var n = 0; n < _nodes.Length; n++)
        {
            var start = _freeAt[n] == DateTimeOffset.MinValue ? at : _freeAt[n];
            while (start <= at && _nodes[n].Run(start) is { } iteration)
            {
                iterations.Add(new NodeIteration(n, iteration));
                start = iteration.End;
            }
            _freeAt[n] = start > at ? start : at; // idle: what is admitted now starts now
        }
        foreach (var run in iterations)
        {
            foreach (var part in run.Iteration.Parts)
            {
                if (_admission.Limit(part.DeploymentId) is { } limit)
                    _byDeployment[part.DeploymentId].Served(run.Iteration.End, part.PromptTokens - part.CachedTokens * (double)limit.CachedDeduction + (double)limit.OutputWeight * part.GeneratedTokens);
            }
            foreach (var sequence in run.Iteration.Finished)
                _admission.Complete(sequence.Admission, sequence.Request.PromptTokens, sequence.Request.CachedTokens, sequence.Generated);
        }

        var admitted = new List<Sequence>();
        var refused = new List<Refusal>();
        Admit(at, admitted, refused);
        List<string> waited = [.. _lanes.Where(l => l.RetryAt <= at && l.Waiting.Count > 0).Select(l => l.DeploymentId)];
        return new FleetStep(at, admitted, refused, iterations, _nodes.Length) { WaitedForGpu = waited };
    }

    /// <summary>
    /// Admits one request at a time to the least busy node with room, each time from the deployment that was served the
    /// least for its purchased rate lately (weighted tokens the GPUs processed for it over the last seconds, decaying, ÷
    /// tokens per minute).
    /// While the GPUs have room this changes nothing: every deployment is admitted as far as its bucket allows. When they are
    /// full it shares them in proportion to what each bought, in the unit each bought, so a deployment spending its burst
    /// allowance, or one whose requests cost the GPU more per weighted token, cannot crowd out the others.
    /// </summary>
    void Admit(DateTimeOffset at, List<Sequence> admitted, List<Refusal> refused)
    {
        while (LeastBusyWithRoom() is { } node)
        {
            Lane? lane = null;
            var least = double.MaxValue;
            foreach (var candidate in _lanes)
            {
                if (candidate.RetryAt > at || candidate.Waiting.Count == 0) continue;
                var rate = _admission.Limit(candidate.DeploymentId)?.TokensPerMinute ?? 0;
                var share = rate > 0 ? candidate.ServedLately(at) / rate : 0; // an unknown limit is asked once, refused, and parked
                if (share < least)
                {
                    least = share;
                    lane = candidate;
                }
            }
            if (lane is null) return;
            var request = lane.Waiting.Peek();
            var admission = _admission.TryAdmit(request.DeploymentId, request.AdapterId, request.PromptTokens, request.CachedTokens, request.MaxOutputTokens);
            if (!admission.IsAdmitted)
            {
                refused.Add(new Refusal(request.DeploymentId, admission));
                lane.RetryAt = at + (admission.RetryAfterMs > 0 ? TimeSpan.FromMilliseconds(admission.RetryAfterMs) : UnavailableRetry);
                continue;
            }
            lane.Waiting.Dequeue();
            var sequence = new Sequence(request, admission, at);
            node.Start(sequence);
            admitted.Add(sequence);
        }
    }

    GpuNode? LeastBusyWithRoom()
    {
        GpuNode? best = null;
        foreach (var node in _nodes)
        {
            if (node.HasRoom && (best is null || node.Running < best.Running)) best = node;
        }
        return best;
    }

    sealed class Lane(string deploymentId)
    {
        public readonly string DeploymentId = deploymentId;
        public readonly Queue<InferenceRequest> Waiting = new();
        static readonly TimeSpan Memory = TimeSpan.FromSeconds(10);

        public DateTimeOffset RetryAt;
        double _served;
        DateTimeOffset _servedAt;

        /// <summary>Weighted tokens the GPUs processed for it, each counting less the longer ago (by e every ten seconds).</summary>
        public double ServedLately(DateTimeOffset at) => _served * Math.Exp(-Math.Max(0, (at - _servedAt) / Memory));

        public void Served(DateTimeOffset at, double weightedTokens)
        {
            _served = ServedLately(at) + weightedTokens;
            _servedAt = at > _servedAt ? at : _servedAt;
        }
    }
}
