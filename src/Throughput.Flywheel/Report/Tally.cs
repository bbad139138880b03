using Throughput.Contracts;
using Throughput.Flywheel.Batching;

namespace Throughput.Flywheel.Report;

/// <summary>One deployment's activity in one time slot.</summary>
public sealed class Slot
{
    public long Prompt { get; set; }
    public long Cached { get; set; }
    public long Generated { get; set; }
    public double Weighted { get; set; }
    public long Admitted { get; set; }
    public long AdmittedEstimate { get; set; }
    public long Refusals { get; set; }
    public long Throttles { get; set; }
    public long Finished { get; set; }
    public double TtftMsSum { get; set; }
    public double TpotMsSum { get; set; }
}

/// <summary>
/// What the fleet served, per deployment and per slot of time (a second by default), with each deployment's purchased rate
/// over time. Served tokens count when an iteration processed them, so the rates follow what the GPUs did for a customer,
/// not when its requests happened to finish. Pure bookkeeping: the demo prints windows of it and draws it.
/// </summary>
public sealed class Tally(DateTimeOffset start, TimeSpan resolution)
{
    readonly Dictionary<string, Track> _tracks = new(StringComparer.Ordinal);
    readonly List<(long Used, long Budget)> _gpu = [];

    public DateTimeOffset Start => start;

    public TimeSpan Resolution => resolution;

    public IReadOnlyList<Track> Tracks => [.. _tracks.Values];

    public Track Follow(string deploymentId, string name, double outputWeight, double cachedDeduction)
    {
        var track = new Track(deploymentId, name, outputWeight, cachedDeduction, this);
        _tracks.Add(deploymentId, track);
        return track;
    }

    public Track this[string deploymentId] => _tracks[deploymentId];

    public void Record(FleetStep step)
    {
        var index = IndexOf(step.At);
        foreach (var served in step.Served)
        {
            if (!_tracks.TryGetValue(served.DeploymentId, out var track)) continue;
            var slot = track.SlotAt(index);
            slot.Prompt += served.PromptTokens;
            slot.Cached += served.CachedTokens;
            slot.Generated += served.GeneratedTokens;
            slot.Weighted += served.PromptTokens + served.CachedTokens * (1 - track.CachedDeduction) + track.OutputWeight * served.GeneratedTokens;
        }
        foreach (var sequence in step.Admitted)
        {
            if (!_tracks.TryGetValue(sequence.Request.DeploymentId, out var track)) continue;
            var slot = track.SlotAt(index);
            slot.Admitted++;
            slot.AdmittedEstimate += sequence.Admission.EstimatedTokens;
        }
        foreach (var refusal in step.Refused)
        {
            if (!_tracks.TryGetValue(refusal.DeploymentId, out var track)) continue;
            track.SlotAt(index).Refusals++;
            if (refusal.Admission.Outcome == Serving.AdmissionOutcome.OverRate) track.FirstRefusalAt ??= step.At;
        }
        foreach (var sequence in step.Finished)
        {
            if (!_tracks.TryGetValue(sequence.Request.DeploymentId, out var track)) continue;
            var slot = track.SlotAt(IndexOf(sequence.FinishedAt ?? step.At));
            slot.Finished++;
            slot.TtftMsSum += sequence.TimeToFirstToken.TotalMilliseconds;
            slot.TpotMsSum += sequence.TimePerOutputToken.TotalMilliseconds;
            var duration = (sequence.FinishedAt ?? step.At) - sequence.AdmittedAt;
            if (duration > track.LongestRequest) track.LongestRequest = duration;
        }
        while (_gpu.Count <= index) _gpu.Add((0, 0));
        _gpu[index] = (_gpu[index].Used + step.TokensUsed, _gpu[index].Budget + step.TokenBudget);
    }

    /// <summary>Share of the fleet's token budget used between two moments.</summary>
    public double GpuUtilization(DateTimeOffset from, DateTimeOffset to)
    {
        long used = 0, budget = 0;
        for (var i = Math.Max(0, IndexOf(from)); i < Math.Min(_gpu.Count, IndexOf(to)); i++)
        {
            used += _gpu[i].Used;
            budget += _gpu[i].Budget;
        }
        return budget == 0 ? 0 : (double)used / budget;
    }

    internal int IndexOf(DateTimeOffset at) => (int)Math.Floor((at - start) / resolution);

    internal DateTimeOffset StartOf(int index) => start + resolution * index;
}

/// <summary>One deployment's series in a <see cref="Tally"/>.</summary>
public sealed class Track(string deploymentId, string name, double outputWeight, double cachedDeduction, Tally tally)
{
    readonly List<Slot> _slots = [];
    readonly List<(DateTimeOffset At, long TokensPerMinute)> _rates = [];
    readonly List<(DateTimeOffset At, int Queued, decimal? Utilization)> _samples = [];
    AdmissionState? _state;

    public string DeploymentId => deploymentId;

    public string Name => name;

    public double OutputWeight => outputWeight;

    public double CachedDeduction => cachedDeduction;

    /// <summary>When admission first refused for lack of tokens: the burst allowance was spent.</summary>
    public DateTimeOffset? FirstRefusalAt { get; internal set; }

    /// <summary>The longest time from admission to last token seen: how long a rate change takes to show fully in served tokens.</summary>
    public TimeSpan LongestRequest { get; internal set; }

    public IReadOnlyList<Slot> Slots => _slots;

    /// <summary>The purchased rate from each moment on.</summary>
    public IReadOnlyList<(DateTimeOffset At, long TokensPerMinute)> Rates => _rates;

    /// <summary>A limit as the serving node received it: the rate, and a throttle when the state turns to throttled.</summary>
    public void Limit(DateTimeOffset at, long tokensPerMinute, AdmissionState state)
    {
        if (_rates.Count == 0 || _rates[^1].TokensPerMinute != tokensPerMinute) _rates.Add((at, tokensPerMinute));
        if (state == AdmissionState.Throttled && _state != AdmissionState.Throttled) SlotAt(tally.IndexOf(at)).Throttles++;
        _state = state;
    }

    /// <summary>The queue length and the platform's metered utilization at a moment (for the window that holds it).</summary>
    public void Sample(DateTimeOffset at, int queued, decimal? utilization) => _samples.Add((at, queued, utilization));

    public long RateAt(DateTimeOffset at)
    {
        long rate = 0;
        foreach (var (from, perMinute) in _rates)
        {
            if (from > at) break;
            rate = perMinute;
        }
        return rate;
    }

    /// <summary>Weighted tokens the purchased rate allows between two moments.</summary>
    public double PurchasedBetween(DateTimeOffset from, DateTimeOffset to)
    {
        double total = 0;
        for (var i = 0; i < _rates.Count; i++)
        {
            var segmentStart = _rates[i].At > from ? _rates[i].At : from;
            var segmentEnd = i + 1 < _rates.Count && _rates[i + 1].At < to ? _rates[i + 1].At : to;
            if (segmentEnd > segmentStart) total += _rates[i].TokensPerMinute * (segmentEnd - segmentStart).TotalMinutes;
        }
        return total;
    }

    public (int Queued, decimal? Utilization)? LastSampleBefore(DateTimeOffset at)
    {
        for (var i = _samples.Count - 1; i >= 0; i--)
        {
            if (_samples[i].At <= at) return (_samples[i].Queued, _samples[i].Utilization);
        }
        return null;
    }

    internal Slot SlotAt(int index)
    {
        while (_slots.Count <= index) _slots.Add(new Slot());
        return _slots[Math.Max(0, index)];
    }

    /// <summary>The sum of the slots between two moments (slot-aligned).</summary>
    public Slot Sum(DateTimeOffset from, DateTimeOffset to)
    {
        var sum = new Slot();
        for (var i = Math.Max(0, tally.IndexOf(from)); i < Math.Min(_slots.Count, tally.IndexOf(to)); i++)
        {
            var s = _slots[i];
            sum.Prompt += s.Prompt;
            sum.Cached += s.Cached;
            sum.Generated += s.Generated;
            sum.Weighted += s.Weighted;
            sum.Admitted += s.Admitted;
            sum.AdmittedEstimate += s.AdmittedEstimate;
            sum.Refusals += s.Refusals;
            sum.Throttles += s.Throttles;
            sum.Finished += s.Finished;
            sum.TtftMsSum += s.TtftMsSum;
            sum.TpotMsSum += s.TpotMsSum;
        }
        return sum;
    }
}
