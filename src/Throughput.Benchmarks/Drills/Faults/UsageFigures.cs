using System.Collections.Immutable;
using Throughput.Contracts;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>What is compared, per deployment, between what the serving nodes published and what the platform billed.</summary>
public enum Measure
{
    Records,
    Prompt,
    Cached,
    Output,
    Weighted,
    SpilledRecords,
    SpilledPrompt,
    SpilledCached,
    SpilledOutput,

    /// <summary>Spilled prompt + spilled output: the usage series keeps only this sum.</summary>
    SpilledTokens,
}

/// <summary>One deployment's usage as one side counts it: the measures that side reports (a view that lacks one has no entry).</summary>
public sealed record UsageFigures(ImmutableSortedDictionary<Measure, decimal> Values)
{
    public static readonly UsageFigures None = new(ImmutableSortedDictionary<Measure, decimal>.Empty);

    public static UsageFigures Of(params (Measure Measure, decimal Value)[] values) =>
        new(values.ToImmutableSortedDictionary(v => v.Measure, v => v.Value));

    public long Records => (long)Values.GetValueOrDefault(Measure.Records);

    public decimal this[Measure measure] => Values.GetValueOrDefault(measure);

    public UsageFigures Plus(UsageFigures other) =>
        new(Values.Keys.Union(other.Values.Keys).ToImmutableSortedDictionary(m => m, m => this[m] + other[m]));
}

/// <summary>
/// Sums of the records a serving node handed to its publisher for one deployment, with the weighted tokens computed as
/// the platform computes them: (prompt − cached × cached deduction) + output weight × output. Not thread-safe.
/// </summary>
public sealed class UsageCounter(decimal outputWeight, decimal cachedDeduction)
{
    long _records, _prompt, _cached, _output, _spilledRecords, _spilledPrompt, _spilledCached, _spilledOutput;
    decimal _weighted;

    public void Add(MeteringRecord r)
    {
        _records++;
        _prompt += r.PromptTokens;
        _cached += r.CachedTokens;
        _output += r.OutputTokens;
        _weighted += r.PromptTokens - r.CachedTokens * cachedDeduction + outputWeight * r.OutputTokens;
        if (!r.Spilled) return;
        _spilledRecords++;
        _spilledPrompt += r.PromptTokens;
        _spilledCached += r.CachedTokens;
        _spilledOutput += r.OutputTokens;
    }

    public UsageFigures Figures() => UsageFigures.Of(
        (Measure.Records, _records), (Measure.Prompt, _prompt), (Measure.Cached, _cached), (Measure.Output, _output), (Measure.Weighted, _weighted),
        (Measure.SpilledRecords, _spilledRecords), (Measure.SpilledPrompt, _spilledPrompt), (Measure.SpilledCached, _spilledCached),
        (Measure.SpilledOutput, _spilledOutput), (Measure.SpilledTokens, _spilledPrompt + _spilledOutput));
}
