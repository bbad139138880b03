namespace Throughput.Benchmarks.Harness;

public static class Percentiles
{
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
