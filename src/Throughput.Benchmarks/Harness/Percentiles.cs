namespace Throughput.Benchmarks.Harness;

public static class Percentiles
{
    /// <summary>The nearest-rank percentile of values sorted ascending; NaN when there are none.</summary>
    public static double Of(IReadOnlyList<double> sorted, double percentile) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(percentile / 100 * sorted.Count) - 1, 0, sorted.Count - 1)];

    /// <summary>The value under which <paramref name="percentile"/> of the total weight lies (nearest rank).</summary>
    public static double Weighted(IReadOnlyList<(double Value, long Weight)> samples, double percentile)
    {
        if (samples.Count == 0) return double.NaN;
        var sorted = samples.OrderBy(s => s.Value).ToList();
        var total = sorted.Sum(s => s.Weight);
        var rank = (long)Math.Ceiling(percentile / 100 * total);
        long seen = 0;
        foreach (var (value, weight) in sorted)
        {
            seen += weight;
            if (seen >= rank) return value;
        }
        return sorted[^1].Value;
    }
}
