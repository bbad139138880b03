using Throughput.Serving;

namespace Throughput.Flywheel.Batching;

/// <summary>
/// A request as a customer sends it: its prompt (of which a prefix may be cached), the max_tokens it asks for, and how
/// many tokens the model will actually generate (the simulation knows it in advance; admission only sees max_tokens), and
/// the adapter it runs on, when its deployment serves adapters.
/// </summary>
public sealed record InferenceRequest(
    string RequestId, string DeploymentId, int PromptTokens, int CachedTokens, int MaxOutputTokens, int OutputTokens, DateTimeOffset ArrivedAt)
{
    public string? AdapterId { get; init; }
}

/// <summary>A request running on a GPU node: how far its prompt has been processed and how many tokens it has generated.</summary>
public sealed class Sequence(InferenceRequest request, Admission admission, DateTimeOffset admittedAt)
{
    public InferenceRequest Request { get; } = request;

    public Admission Admission { get; } = admission;

    public DateTimeOffset AdmittedAt { get; } = admittedAt;

    /// <summary>Prompt tokens in the KV cache; a cached prefix is there from the start and costs the GPU nothing.</summary>
    public int PromptDone { get; internal set; } = Math.Min(request.CachedTokens, request.PromptTokens);

    public int Generated { get; internal set; }

    public DateTimeOffset? FirstTokenAt { get; internal set; }

    public DateTimeOffset? FinishedAt { get; internal set; }

    /// <summary>Tokens in its KV cache: the prompt processed so far and what it generated.</summary>
    public long Context => PromptDone + Generated;

    public bool Prefilled => PromptDone >= Request.PromptTokens;

    public bool Finished => Generated >= Request.OutputTokens;

    /// <summary>Time to first token, from admission.</summary>
    public TimeSpan TimeToFirstToken => (FirstTokenAt ?? AdmittedAt) - AdmittedAt;

    /// <summary>Mean time between generated tokens after the first.</summary>
    public TimeSpan TimePerOutputToken => Generated > 1 && FirstTokenAt is { } first && FinishedAt is { } last
        ? (last - first) / (Generated - 1)
        : TimeSpan.Zero;
}
