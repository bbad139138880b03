namespace Throughput.Flywheel.Batching;

/// <summary>Tokens one iteration processed for one deployment.</summary>
public readonly record struct ServedTokens(string DeploymentId, int PromptTokens, int CachedTokens, int GeneratedTokens);

/// <summary>What one iteration of one node did.</summary>
public sealed record Iteration(int TokensUsed, IReadOnlyList<ServedTokens> Served, IReadOnlyList<Sequence> Finished);

/// <summary>
/// A simulated GPU node running a Flywheel batcher. Every iteration has a fixed token budget: first each running sequence
/// that is past its prompt generates one token, then prompt chunks of the waiting sequences fill what is left of the budget
/// (chunked prefill interleaved with generation), so a long prompt never stalls anyone's generation and every sequence
/// gets one token per iteration. Not thread-safe: one loop drives a node.
/// </summary>
public sealed class GpuNode(int tokenBudget, int maxSequences)
{
    readonly List<Sequence> _decoding = [];
    readonly List<Sequence> _prefilling = [];
    int _decodeStart;

    public int TokenBudget { get; } = tokenBudget;

    public int MaxSequences { get; } = maxSequences;

    public int Running => _decoding.Count + _prefilling.Count;

    public bool HasRoom => Running < MaxSequences;

    public void Start(Sequence sequence)
    {
        if (!HasRoom) throw new InvalidOperationException("The node is full.");
        (sequence.Prefilled ? _decoding : _prefilling).Add(sequence);
    }

    /// <summary>Runs one iteration that starts at <paramref name="at"/> and takes <paramref name="duration"/>; tokens appear at its end.</summary>
    public Iteration Run(DateTimeOffset at, TimeSpan duration)
    {
        var end = at + duration;
        var served = new Dictionary<string, (int Prompt, int Cached, int Generated)>(StringComparer.Ordinal);
        var finished = new List<Sequence>();
        var budget = TokenBudget;

        // Decode first: one token per running sequence. Only when there are more sequences than budget does anyone wait,
        // and then the start rotates so the same ones do not always wait.
        var decodeCount = Math.Min(_decoding.Count, budget);
        for (var i = 0; i < decodeCount; i++)
        {
            var sequence = _decoding[(_decodeStart + i) % _decoding.Count];
            Generate(sequence, end, served);
        }
        _decodeStart = _decoding.Count == 0 ? 0 : (_decodeStart + decodeCount) % _decoding.Count;
        budget -= decodeCount;

        // Then prompt chunks, first come first served, as much of each prompt as the budget left allows.
        var prefilled = 0;
        foreach (var sequence in _prefilling)
        {
            if (budget == 0) break;
            var chunk = Math.Min(budget, sequence.Request.PromptTokens - sequence.PromptDone);
            sequence.PromptDone += chunk;
            budget -= chunk;
            Add(served, sequence.Request.DeploymentId, prompt: chunk, cached: sequence.PromptDone == sequence.Request.PromptTokens ? sequence.Request.CachedTokens : 0, generated: 0);
            if (!sequence.Prefilled) break;
            prefilled++;
            // The pass that reads the last chunk of a prompt samples the first output token.
            Generate(sequence, end, served);
            if (sequence.Finished) finished.Add(sequence);
            else _decoding.Add(sequence);
        }
        _prefilling.RemoveRange(0, prefilled);

        var before = finished.Count;
        foreach (var sequence in _decoding)
        {
            if (sequence.Finished) finished.Add(sequence);
        }
        if (finished.Count > before) _decoding.RemoveAll(s => s.Finished);

        return new Iteration(TokenBudget - budget, [.. served.Select(p => new ServedTokens(p.Key, p.Value.Prompt, p.Value.Cached, p.Value.Generated))], finished);
    }

    static void Generate(Sequence sequence, DateTimeOffset end, Dictionary<string, (int Prompt, int Cached, int Generated)> served)
    {
        sequence.Generated++;
        sequence.FirstTokenAt ??= end;
        if (sequence.Finished) sequence.FinishedAt = end;
        Add(served, sequence.Request.DeploymentId, prompt: 0, cached: 0, generated: 1);
    }

    static void Add(Dictionary<string, (int Prompt, int Cached, int Generated)> served, string deploymentId, int prompt, int cached, int generated)
    {
        var current = served.GetValueOrDefault(deploymentId);
        served[deploymentId] = (current.Prompt + prompt, current.Cached + cached, current.Generated + generated);
    }
}
