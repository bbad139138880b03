namespace Throughput.Flywheel.Batching;

/// <summary>Tokens one iteration processed for one deployment.</summary>
public readonly record struct ServedTokens(string DeploymentId, int PromptTokens, int CachedTokens, int GeneratedTokens);

/// <summary>
/// One request's share of an iteration: a prompt chunk, a generated token, or both (the chunk that ends a prompt samples the
/// first token).
/// </summary>
public readonly record struct IterationPart(string RequestId, string DeploymentId, int PromptTokens, int CachedTokens, int GeneratedTokens);

/// <summary>What one iteration of one node did; its tokens appear at <see cref="End"/>.</summary>
public sealed record Iteration(DateTimeOffset Start, TimeSpan Duration, IterationWork Work, IReadOnlyList<IterationPart> Parts, IReadOnlyList<Sequence> Finished)
{
    public DateTimeOffset End => Start + Duration;

    public int TokensUsed => Work.Tokens;

    /// <summary>The parts summed per deployment.</summary>
    public IReadOnlyList<ServedTokens> Served =>
    [
        .. Parts.GroupBy(p => p.DeploymentId, StringComparer.Ordinal)
            .Select(g => new ServedTokens(g.Key, g.Sum(p => p.PromptTokens), g.Sum(p => p.CachedTokens), g.Sum(p => p.GeneratedTokens))),
    ];
}

/// <summary>How a node composes an iteration.</summary>
public enum Scheduling
{
    /// <summary>
    /// Project Flywheel (chunked prefill, as Sarathi-Serve's stall-free batching): a fixed token budget per iteration, every
    /// decoding sequence first, then prompt chunks fill what is left, so iterations stay alike and nobody's generation stalls.
    /// </summary>
    Flywheel,

    /// <summary>
    /// As engines batched before chunked prefill (Orca's iteration-level batching): every decoding sequence, plus waiting
    /// prompts prefilled whole, first come first served, as many as fit the prompt batch limit and always at least one, so
    /// an iteration takes as long as the prompts in it and everyone decoding beside them waits it out.
    /// </summary>
    WholePrompt,
}

/// <summary>
/// A simulated GPU node: it holds running sequences and composes one iteration at a time by its <see cref="Scheduling"/>;
/// the iteration's duration comes from <paramref name="duration"/> (the cost model, or a fixed time). Not thread-safe: one
/// loop drives a node.
/// </summary>
public sealed class GpuNode(Scheduling scheduling, int tokenBudget, int maxSequences, Func<IterationWork, TimeSpan> duration)
{
    readonly List<Sequence> _decoding = [];
    readonly List<Sequence> _prefilling = [];
    int _decodeStart;

    /// <summary>A Flywheel node whose iterations all take <paramref name="iterationTime"/>.</summary>
    public GpuNode(int tokenBudget, int maxSequences, TimeSpan iterationTime)
        : this(Scheduling.Flywheel, tokenBudget, maxSequences, _ => iterationTime)
    {
    }

    public Scheduling Scheduling => scheduling;

    /// <summary>Flywheel: tokens per iteration. Whole-prompt: prompt tokens batched in one iteration (one prompt may exceed it).</summary>
    public int TokenBudget { get; } = tokenBudget;

    public int MaxSequences { get; } = maxSequences;

    public int Running => _decoding.Count + _prefilling.Count;

    /// <summary>The adapters the node holds in GPU memory; null when it serves none.</summary>
    public AdapterSlots? Adapters { get; init; }

    /// <summary>
    /// Room for one more request: a free sequence slot, and prompts waiting for prefill that the next two iterations can
    /// take (Flywheel) or the next one (whole-prompt). A request the node could not start soon waits in its deployment's
    /// queue instead, where admission can still choose between customers, rather than on the node.
    /// </summary>
    public bool HasRoom => Running < MaxSequences && WaitingPromptTokens() < (scheduling == Scheduling.Flywheel ? 2 * TokenBudget : TokenBudget);

    int WaitingPromptTokens()
    {
        var waiting = 0;
        foreach (var sequence in _prefilling) waiting += sequence.Request.PromptTokens - sequence.PromptDone;
        return waiting;
    }

    public void Start(Sequence sequence)
    {
        if (Running >= MaxSequences) throw new InvalidOperationException("The node is full.");
        (sequence.Prefilled ? _decoding : _prefilling).Add(sequence);
    }

    /// <summary>Composes and runs one iteration starting at <paramref name="at"/>; null when there is nothing to run.</summary>
    public Iteration? Run(DateTimeOffset at)
    {
        if (Running == 0) return null;
        var parts = new List<(Sequence Sequence, int Prompt, int Cached, bool Generates)>();
        var work = new IterationWork();

        // Decode first: one token per running sequence. Only when there are more sequences than budget does anyone wait,
        // and then the start rotates so the same ones do not always wait.
        var decodeCount = scheduling == Scheduling.Flywheel ? Math.Min(_decoding.Count, TokenBudget) : _decoding.Count;
        for (var i = 0; i < decodeCount; i++)
        {
            var sequence = _decoding[(_decodeStart + i) % _decoding.Count];
            work = work.AddDecode(sequence.Context);
            parts.Add((sequence, 0, 0, true));
        }
        _decodeStart = _decoding.Count == 0 ? 0 : (_decodeStart + decodeCount) % _decoding.Count;

        // Then prompts, first come first served: chunks of what the budget leaves (Flywheel), or whole ones (whole-prompt).
        var left = TokenBudget - (scheduling == Scheduling.Flywheel ? decodeCount : 0);
        var prefilled = 0;
        foreach (var sequence in _prefilling)
        {
            var remaining = sequence.Request.PromptTokens - sequence.PromptDone;
            var chunk = scheduling == Scheduling.Flywheel ? Math.Min(left, remaining)
                : remaining <= left || work.PrefillTokens == 0 ? remaining
                : 0;
            if (chunk == 0) break;
            work = work.AddChunk(chunk, sequence.PromptDone);
            left -= chunk;
            var completes = chunk == remaining;
            parts.Add((sequence, chunk, completes ? sequence.Request.CachedTokens : 0, completes));
            if (!completes) break;
            prefilled++;
        }

        if (Adapters is not null) work = WithAdapters(work, parts);
        var took = duration(work);
        var end = at + took;
        var finished = new List<Sequence>();
        var result = new List<IterationPart>(parts.Count);
        foreach (var (sequence, prompt, cached, generates) in parts)
        {
            sequence.PromptDone += prompt;
            if (generates)
            {
                sequence.Generated++;
                sequence.FirstTokenAt ??= end;
                if (sequence.Finished)
                {
                    sequence.FinishedAt = end;
                    finished.Add(sequence);
                }
            }
            result.Add(new IterationPart(sequence.Request.RequestId, sequence.Request.DeploymentId, prompt, cached, generates ? 1 : 0));
        }
        for (var i = 0; i < prefilled; i++)
        {
            if (!_prefilling[i].Finished) _decoding.Add(_prefilling[i]);
        }
        _prefilling.RemoveRange(0, prefilled);
        if (finished.Count > 0) _decoding.RemoveAll(s => s.Finished);
        return new Iteration(at, took, work, result, finished);
    }

    /// <summary>
    /// The adapters of the iteration's requests are used now; the cold ones are loaded first. A node holds at least as many
    /// adapters as requests (<see cref="FleetOptions.AdapterSlots"/>), so a load never evicts an adapter the same iteration uses.
    /// </summary>
    IterationWork WithAdapters(IterationWork work, List<(Sequence Sequence, int Prompt, int Cached, bool Generates)> parts)
    {
        var tokens = 0;
        var loaded = 0;
        HashSet<string>? inBatch = null;
        foreach (var (sequence, prompt, _, _) in parts)
        {
            if (sequence.Request.AdapterId is not { } adapter) continue;
            tokens += prompt > 0 ? prompt : 1; // a chunk's tokens, or the one decoded
            if ((inBatch ??= new(StringComparer.Ordinal)).Add(adapter) && Adapters!.Use(adapter)) loaded++;
        }
        return inBatch is null ? work : work.WithAdapters(tokens, inBatch.Count, loaded);
    }
}
