using Throughput.Serving;

namespace Throughput.Flywheel.Batching;

/// <summary>How many simulated GPU nodes, their token budget per iteration and how long an iteration takes.</summary>
public sealed record FleetOptions
{
    public int Nodes { get; init; } = 2;

    public int TokenBudget { get; init; } = 4096;

    public TimeSpan IterationTime { get; init; } = TimeSpan.FromMilliseconds(25);

    public int MaxSequencesPerNode { get; init; } = 1024;

    /// <summary>Tokens per minute the whole fleet can process, whatever their kind.</summary>
    public double TokensPerMinute => Nodes * TokenBudget * (TimeSpan.FromMinutes(1) / IterationTime);
}

/// <summary>A request refused admission for now.</summary>
public readonly record struct Refusal(string DeploymentId, Admission Admission);

/// <summary>What one step of the fleet did: the admissions, the refusals, and every node's iteration.</summary>
public sealed record FleetStep(
    DateTimeOffset At, IReadOnlyList<Sequence> Admitted, IReadOnlyList<Refusal> Refused, IReadOnlyList<ServedTokens> Served,
    IReadOnlyList<Sequence> Finished, int TokensUsed, int TokenBudget);

/// <summary>
/// One serving process: requests wait in a queue per deployment until the shared <see cref="AdmissionCache"/> admits them,
/// then run on the least busy node. A refused deployment is asked again only after its retry-after, as a client honouring
/// <c>retry-after-ms</c> would. Pure apart from the cache's clock: each <see cref="Step"/> is one iteration at a given time.
/// </summary>
public sealed class Fleet
{
    static readonly TimeSpan UnavailableRetry = TimeSpan.FromSeconds(1);

    readonly FleetOptions _options;
    readonly AdmissionCache _admission;
    readonly GpuNode[] _nodes;
    readonly List<Lane> _lanes = [];
    readonly Dictionary<string, Lane> _byDeployment = new(StringComparer.Ordinal);
    int _firstLane;

    public Fleet(FleetOptions options, AdmissionCache admission)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Nodes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.TokenBudget, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.IterationTime, TimeSpan.Zero);
        // Decoding goes first; with fewer sequences than tokens per iteration it can never take the whole budget and starve prompts.
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(options.MaxSequencesPerNode, options.TokenBudget);
        _options = options;
        _admission = admission;
        _nodes = [.. Enumerable.Range(0, options.Nodes).Select(_ => new GpuNode(options.TokenBudget, options.MaxSequencesPerNode))];
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

    /// <summary>Admits what the cache allows, then runs one iteration on every node; finished requests are reconciled with the cache.</summary>
    public FleetStep Step(DateTimeOffset at)
    {
        var admitted = new List<Sequence>();
        var refused = new List<Refusal>();
        Admit(at, admitted, refused);

        var served = new List<ServedTokens>();
        var finished = new List<Sequence>();
        var used = 0;
        foreach (var node in _nodes)
        {
            var iteration = node.Run(at, _options.IterationTime);
            used += iteration.TokensUsed;
            served.AddRange(iteration.Served);
            finished.AddRange(iteration.Finished);
        }
        foreach (var sequence in finished)
            _admission.Complete(sequence.Admission, sequence.Request.PromptTokens, sequence.Request.CachedTokens, sequence.Generated);
        return new FleetStep(at, admitted, refused, served, finished, used, _options.TokenBudget * _nodes.Length);
    }

    void Admit(DateTimeOffset at, List<Sequence> admitted, List<Refusal> refused)
    {
        if (_lanes.Count == 0) return;
        // Start with a different deployment each step, so none is always first to the free GPU slots.
        _firstLane = (_firstLane + 1) % _lanes.Count;
        for (var n = 0; n < _lanes.Count; n++)
        {
            var lane = _lanes[(_firstLane + n) % _lanes.Count];
            if (lane.RetryAt > at) continue;
            while (lane.Waiting.TryPeek(out var request))
            {
                var node = LeastBusyWithRoom();
                if (node is null) return; // the GPUs are full: admitting now would take tokens the fleet cannot serve yet
                var admission = _admission.TryAdmit(request.DeploymentId, request.PromptTokens, request.CachedTokens, request.MaxOutputTokens);
                if (!admission.IsAdmitted)
                {
                    refused.Add(new Refusal(request.DeploymentId, admission));
                    lane.RetryAt = at + (admission.RetryAfterMs > 0 ? TimeSpan.FromMilliseconds(admission.RetryAfterMs) : UnavailableRetry);
                    break;
                }
                lane.Waiting.Dequeue();
                var sequence = new Sequence(request, admission, at);
                node.Start(sequence);
                admitted.Add(sequence);
            }
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
        public DateTimeOffset RetryAt;
    }
}
