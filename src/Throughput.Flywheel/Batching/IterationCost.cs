namespace Throughput.Flywheel.Batching;

/// <summary>A GPU kind as the cost model sees it: peak dense BF16 throughput, memory bandwidth, and the shares of each a serving engine reaches.</summary>
public sealed record GpuKind(string Name, double PeakFlopsPerSecond, double MemoryBytesPerSecond, double ComputeEfficiency, double MemoryEfficiency, TimeSpan Overhead)
{
    /// <summary>
    /// NVIDIA A100-SXM4-80GB: 312 TFLOPS dense BF16 and 2,039 GB/s HBM2e (NVIDIA's datasheet). A serving engine reaches about
    /// half of the peak in prefill (FlashAttention-2's reported utilization of the A100) and about 70 % of the bandwidth in
    /// decode; about a millisecond per iteration goes to scheduling and kernel launches.
    /// </summary>
    public static readonly GpuKind A100 = new("A100-80GB", 312e12, 2.039e12, ComputeEfficiency: 0.55, MemoryEfficiency: 0.70, TimeSpan.FromMilliseconds(1));

    /// <summary>
    /// What a copy from host memory reaches, which is what loading a cold adapter takes: the A100-SXM4's host link is PCIe 4.0
    /// x16, 32 GB/s a direction on paper; pinned copies reach about 25 GB/s. Another kind states its own.
    /// </summary>
    public double HostLinkBytesPerSecond { get; init; } = 25e9;

    public static IReadOnlyList<GpuKind> Known { get; } = [A100];

    public static GpuKind Named(string name) =>
        Known.FirstOrDefault(k => string.Equals(k.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"No GPU kind '{name}'; known: {string.Join(", ", Known.Select(k => k.Name))}.", nameof(name));
}

/// <summary>A dense transformer's shape: what one token costs in arithmetic and what its KV cache costs in memory.</summary>
public sealed record ModelShape(string Name, double Parameters, int Layers, int Hidden, int KvHeads, int HeadDimension, int BytesPerValue = 2)
{
    /// <summary>Mistral-7B v0.1 (its published configuration): 7.24B parameters, 32 layers, hidden 4,096, 8 KV heads of 128 (grouped-query attention).</summary>
    public static readonly ModelShape Mistral7B = new("Mistral-7B", 7.24e9, Layers: 32, Hidden: 4_096, KvHeads: 8, HeadDimension: 128);

    public double WeightBytes => Parameters * BytesPerValue;

    /// <summary>
    /// Parameters of a LoRA adapter of <paramref name="rank"/> on the four attention projections (q, k, v, o) of every layer:
    /// rank × (inputs + outputs) each. Mistral-7B at rank 16: 13.6M, 27 MB in BF16, 0.19 % of the base model.
    /// </summary>
    public double LoraParameters(int rank) => (double)rank * Layers * (2.0 * (Hidden + Hidden) + 2.0 * (Hidden + KvHeads * HeadDimension));

    /// <summary>Keys and values of one token in every layer.</summary>
    public double KvBytesPerToken => 2.0 * Layers * KvHeads * HeadDimension * BytesPerValue;
}

/// <summary>
/// What one iteration asks of the GPU. <see cref="PrefillAttention"/> is Σ chunk × (tokens before it + chunk ÷ 2) over the
/// prompt chunks (each chunk's tokens attend to the prompt before them and to half of the chunk on average);
/// <see cref="DecodeContext"/> is Σ context length over the decoding sequences (each new token reads its whole KV cache).
/// </summary>
public readonly record struct IterationWork(int PrefillTokens, long PrefillAttention, int DecodeSequences, long DecodeContext)
{
    public int Tokens => PrefillTokens + DecodeSequences;

    public bool IsEmpty => Tokens == 0;

    public IterationWork AddChunk(int tokens, long before) => this with
    {
        PrefillTokens = PrefillTokens + tokens,
        PrefillAttention = PrefillAttention + tokens * before + (long)tokens * tokens / 2,
    };

    public IterationWork AddDecode(long context) => this with { DecodeSequences = DecodeSequences + 1, DecodeContext = DecodeContext + context };

    /// <summary>Tokens of the iteration that go through an adapter (each costs the adapter's arithmetic as well).</summary>
    public int AdapterTokens { get; init; }

    /// <summary>Distinct adapters in the batch: each one's weights are read once per iteration, as the base model's are.</summary>
    public int AdaptersInBatch { get; init; }

    /// <summary>Adapters that were not in GPU memory: each is copied in from the host before the iteration can run.</summary>
    public int AdaptersLoaded { get; init; }

    public IterationWork WithAdapters(int tokens, int inBatch, int loaded) => this with { AdapterTokens = tokens, AdaptersInBatch = inBatch, AdaptersLoaded = loaded };
}

/// <summary>
/// How long an iteration takes on one GPU, as a roofline: the larger of its arithmetic (2 FLOPs per parameter per token,
/// plus attention: 4 × layers × hidden per attended token pair) at the reachable compute rate, and its memory traffic (every
/// weight once, every decoding sequence's KV cache) at the reachable bandwidth, plus a fixed overhead. Decode-only
/// iterations are memory-bound (about 11 ms for Mistral-7B on an A100 at small batch: the weights' 14.5 GB at 1.4 TB/s);
/// a prompt chunk of a few hundred tokens makes the iteration compute-bound, and a whole 3,000-token prompt takes a
/// quarter of a second, which every sequence decoding beside it waits out.
/// Adapters (LoRA of <see cref="AdapterRank"/>) add their arithmetic per token that goes through one and each distinct
/// adapter's weights to the memory traffic, as batched multi-adapter kernels (Punica's SGMV, S-LoRA) do; an adapter that
/// was not in GPU memory is copied in over the host link before the iteration runs, in series with it. Pure.
/// </summary>
public sealed record IterationCost(GpuKind Gpu, ModelShape Model)
{
    public static readonly IterationCost MistralOnA100 = new(GpuKind.A100, ModelShape.Mistral7B);

    /// <summary>The rank of the adapters served (16 is a common fine-tune: 27 MB for Mistral-7B).</summary>
    public int AdapterRank { get; init; } = 16;

    public double AdapterBytes => Model.LoraParameters(AdapterRank) * Model.BytesPerValue;

    public TimeSpan Of(IterationWork work)
    {
        if (work.IsEmpty) return TimeSpan.Zero;
        var flops = 2 * Model.Parameters * work.Tokens + 4.0 * Model.Layers * Model.Hidden * (work.PrefillAttention + work.DecodeContext)
                    + 2 * Model.LoraParameters(AdapterRank) * work.AdapterTokens;
        var compute = flops / (Gpu.PeakFlopsPerSecond * Gpu.ComputeEfficiency);
        var bytes = Model.WeightBytes + Model.KvBytesPerToken * work.DecodeContext + AdapterBytes * work.AdaptersInBatch;
        var memory = bytes / (Gpu.MemoryBytesPerSecond * Gpu.MemoryEfficiency);
        return Gpu.Overhead + TimeSpan.FromSeconds(Math.Max(compute, memory)) + LoadTime(work.AdaptersLoaded);
    }

    /// <summary>Copying <paramref name="adapters"/> cold adapters from host memory: 1.1 ms each at rank 16 on the A100's PCIe 4.0.</summary>
    public TimeSpan LoadTime(int adapters) => TimeSpan.FromSeconds(adapters * AdapterBytes / Gpu.HostLinkBytesPerSecond);

}
