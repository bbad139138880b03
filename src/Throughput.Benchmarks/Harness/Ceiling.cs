using System.Globalization;

namespace Throughput.Benchmarks.Harness;

/// <summary>
/// A platform figure beside the raw ceiling of its path, measured in the same run on the same machine and services: the
/// ratio is what the platform makes of what the machine can do at all, which the absolute figure alone cannot say on a
/// machine whose speed moves from day to day.
/// </summary>
/// <param name="Platform">The platform's figure.</param>
/// <param name="Raw">The same figure for the bare path (no domain logic, no framework), in the same unit.</param>
public readonly record struct Ceiling(double Platform, double Raw)
{
    /// <summary>Platform ÷ raw; NaN when either side is missing or the raw side is zero, so a broken ceiling never passes.</summary>
    public double Ratio => Raw > 0 && !double.IsNaN(Platform) && !double.IsInfinity(Raw) ? Platform / Raw : double.NaN;

    /// <summary>A rate held against a share of its ceiling: met when platform ÷ raw ≥ <paramref name="minimum"/>.</summary>
    public Figure AtLeast(string name, double minimum, Func<double, string> format) =>
        new(name, Describe(format), $"≥ {minimum.ToString("0.0#", CultureInfo.InvariantCulture)} × raw", !double.IsNaN(Ratio) && Ratio >= minimum);

    /// <summary>A latency held against a multiple of its ceiling: met when platform ÷ raw ≤ <paramref name="maximum"/>.</summary>
    public Figure AtMost(string name, double maximum, Func<double, string> format) =>
        new(name, Describe(format), $"≤ {maximum.ToString("0.0#", CultureInfo.InvariantCulture)} × raw", !double.IsNaN(Ratio) && Ratio <= maximum);

    /// <summary>Both absolute figures and the ratio, without a target (the target is absolute and stated elsewhere).</summary>
    public Figure Beside(string name, Func<double, string> format) => new(name, Describe(format));

    public string Describe(Func<double, string> format) =>
        $"{format(Platform)} / raw {format(Raw)} = {(double.IsNaN(Ratio) ? "n/a" : Ratio.ToString("0.00", CultureInfo.InvariantCulture))}";
}
