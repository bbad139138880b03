using Throughput.Flywheel.Batching;

namespace Throughput.Flywheel.Load;

/// <summary>
/// A customer's kind of traffic: typical prompt and generated tokens, the share of the prompt that hits the prefix cache, the
/// max_tokens clients ask for relative to the largest output they expect, and how much sizes vary (± share, uniform).
/// </summary>
public sealed record Workload(string Name, int PromptTokens, int OutputTokens, double CachedShare = 0, double MaxTokensFactor = 1.0, double Jitter = 0.1)
{
    /// <summary>Document creation: a short instruction, a long text generated.</summary>
    public static readonly Workload DocumentCreation = new("document creation", 200, 1_000);

    /// <summary>Summarization: a long document in, a short summary out.</summary>
    public static readonly Workload Summarization = new("summarization", 3_000, 100);

    /// <summary>Chat: a conversation whose earlier turns are mostly in the prefix cache, a medium answer.</summary>
    public static readonly Workload Chat = new("chat", 800, 400, CachedShare: 0.25);

    /// <summary>
    /// The same prompts with outputs <paramref name="factor"/> times as long: shorter requests for quick runs, whose prompts
    /// still weigh on the GPU as they do in full.
    /// </summary>
    public Workload Scaled(double factor) => factor == 1 ? this : this with { OutputTokens = Math.Max(2, (int)Math.Round(OutputTokens * factor)) };

    /// <summary>The weighted cost of a typical request: (prompt − cached × deduction) + output weight × output.</summary>
    public double WeightedTokens(double outputWeight, double cachedDeduction) =>
        PromptTokens - PromptTokens * CachedShare * cachedDeduction + outputWeight * OutputTokens;
}

/// <summary>
/// Requests of one workload for one deployment: a backlog of <paramref name="backlogTokens"/> weighted tokens waiting at the
/// start (a batch job, say), then arrivals evenly at an offered rate of weighted tokens per minute (each arrival is one
/// request's weighted cost after the previous one). Sizes vary with a seeded generator, so a run repeats.
/// </summary>
public sealed class Arrivals(string deploymentId, Workload workload, double offeredPerMinute, double backlogTokens, double outputWeight, double cachedDeduction, DateTimeOffset start, int seed)
{
    readonly Random _random = new(seed);
    DateTimeOffset _next = start;
    double _backlog = backlogTokens;
    long _count;

    public string DeploymentId => deploymentId;

    public Workload Workload => workload;

    /// <summary>The adapters of the deployment (an adapter set) its requests run on; null for a base deployment.</summary>
    public AdapterPopularity? Adapters { get; init; }

    /// <summary>Weighted tokens per minute offered; can be changed while running.</summary>
    public double OfferedPerMinute { get; set; } = offeredPerMinute;

    /// <summary>Every request that has arrived by <paramref name="at"/> and was not handed out yet.</summary>
    public IEnumerable<InferenceRequest> Until(DateTimeOffset at)
    {
        while (_next <= at)
        {
            var request = NextAt(_next);
            var weighted = Math.Max(0, request.PromptTokens - request.CachedTokens * cachedDeduction) + outputWeight * request.OutputTokens;
            if (_backlog > 0) _backlog -= weighted;
            else _next += TimeSpan.FromMinutes(weighted / OfferedPerMinute);
            yield return request;
        }
    }

    /// <summary>A request of this workload arriving at <paramref name="at"/>, outside the offered rate.</summary>
    public InferenceRequest NextAt(DateTimeOffset at)
    {
        var prompt = Vary(workload.PromptTokens);
        var output = Vary(workload.OutputTokens);
        var cached = (int)Math.Round(prompt * workload.CachedShare);
        var maxTokens = (int)Math.Ceiling(workload.OutputTokens * workload.MaxTokensFactor * (1 + workload.Jitter));
        return new InferenceRequest($"{deploymentId}-{_count++:D7}", deploymentId, prompt, cached, Math.Max(maxTokens, output), output, at)
        {
            AdapterId = Adapters?.Next(),
        };
    }

    int Vary(int tokens) => Math.Max(1, (int)Math.Round(tokens * (1 + workload.Jitter * (2 * _random.NextDouble() - 1))));
}
