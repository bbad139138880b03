namespace Throughput.Flywheel.Load;

/// <summary>
/// Which adapter each request of a set runs on: Zipf-distributed over the adapters in use (the k-th most popular is asked
/// 1/k^<paramref name="exponent"/> as often as the first), as a few fine-tunes of a tenant carry most of its traffic and
/// a long tail the rest. Seeded, so a run repeats.
/// </summary>
public sealed class AdapterPopularity
{
    readonly IReadOnlyList<string> _adapters;
    readonly double[] _cumulative;
    readonly Random _random;

    public AdapterPopularity(IReadOnlyList<string> adapters, double exponent, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfZero(adapters.Count);
        _adapters = adapters;
        _cumulative = new double[adapters.Count];
        var sum = 0d;
        for (var k = 0; k < adapters.Count; k++) _cumulative[k] = sum += 1 / Math.Pow(k + 1, exponent);
        for (var k = 0; k < adapters.Count; k++) _cumulative[k] /= sum;
        _random = new Random(seed);
    }

    public IReadOnlyList<string> Adapters => _adapters;

    public string Next()
    {
        var index = Array.BinarySearch(_cumulative, _random.NextDouble());
        return _adapters[Math.Min(index < 0 ? ~index : index, _adapters.Count - 1)];
    }
}
