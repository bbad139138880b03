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
}

/// <summary>
/// How long an iteration takes on one GPU, as a roofline: the larger of its arithmetic (2 FLOPs per parameter per token,
/// plus attention: 4 × layers × hidden per attended token pair) at the reachable compute rate, and its memory traffic (every
/// weight once, every decoding sequence's KV cache) at the reachable bandwidth, plus a fixed overhead. Decode-only
/// iterations are memory-bound (about 11 ms for Mistral-7B on an A100 at small batch: the weights' 14.5 GB at 1.4 TB/s);
/// a prompt chunk of a few hundred tokens makes the iteration compute-bound, and a whole 3,000-token prompt takes a
/// quarter of a second, which every sequence decoding beside it waits out. Pure.
/// </summary>
public sealed record IterationCost(GpuKind Gpu, ModelShape Model)
{
    public static readonly IterationCost MistralOnA100 = new(GpuKind.A100, ModelShape.Mistral7B);

    public TimeSpan Of(IterationWork work)
    {
        if (work.IsEmpty) return TimeSpan.Zero;
        var flops = 2 * Model.Parameters * work.Tokens + 4.0 * Model.Layers * Model.Hidden * (work.PrefillAttention + work.DecodeContext);
        var compute = flops / (Gpu.PeakFlopsPerSecond * Gpu.ComputeEfficiency);
        var bytes = Model.WeightBytes + Model.KvBytesPerToken * work.DecodeContext;
        var memory = bytes / (Gpu.MemoryBytesPerSecond * Gpu.MemoryEfficiency);
        return Gpu.Overhead + TimeSpan.FromSeconds(Math.Max(compute, memory));
    }

}
