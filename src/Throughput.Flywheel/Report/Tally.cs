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
    public long GpuWaits { get; set; }
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
    readonly List<(double BusySeconds, int Nodes)> _gpu = [];
    readonly List<NodeIteration> _strip = [];

    public DateTimeOffset Start => start;

    public TimeSpan Resolution => resolution;

    public IReadOnlyList<Track> Tracks => [.. _tracks.Values];

    /// <summary>Node 0's iterations that started within <see cref="StripSpan"/>, whole, for the iteration strip.</summary>
    public IReadOnlyList<NodeIteration> Strip => _strip;

    public (DateTimeOffset From, TimeSpan Length)? StripSpan { get; init; }

    public Track Follow(string deploymentId, string name, double outputWeight, double cachedDeduction)
    {
        var track = new Track(deploymentId, name, outputWeight, cachedDeduction, this);
        _tracks.Add(deploymentId, track);
        return track;
    }

    public Track this[string deploymentId] => _tracks[deploymentId];

    /// <summary>The deployment's track, or null when the tally does not follow it.</summary>
    public Track? Find(string deploymentId) => _tracks.GetValueOrDefault(deploymentId);

    public void Record(FleetStep step)
    {
        var index = IndexOf(step.At);
        foreach (var (node, iteration) in step.Iterations)
        {
            var at = IndexOf(iteration.End);
            foreach (var part in iteration.Parts)
            {
                if (!_tracks.TryGetValue(part.DeploymentId, out var track)) continue;
                var slot = track.SlotAt(at);
                slot.Prompt += part.PromptTokens;
                slot.Cached += part.CachedTokens;
                slot.Generated += part.GeneratedTokens;
                slot.Weighted += part.PromptTokens + part.CachedTokens * (1 - track.CachedDeduction) + track.OutputWeight * part.GeneratedTokens;
            }
            var started = IndexOf(iteration.Start);
            while (_gpu.Count <= started) _gpu.Add((0, step.Nodes));
            _gpu[started] = (_gpu[started].BusySeconds + iteration.Duration.TotalSeconds, step.Nodes);
            if (node == 0 && StripSpan is { } strip && iteration.Start >= strip.From && iteration.Start < strip.From + strip.Length) _strip.Add(new NodeIteration(node, iteration));
            foreach (var sequence in iteration.Finished)
            {
                if (!_tracks.TryGetValue(sequence.Request.DeploymentId, out var track)) continue;
                var slot = track.SlotAt(IndexOf(sequence.FinishedAt ?? iteration.End));
                slot.Finished++;
                slot.TtftMsSum += sequence.TimeToFirstToken.TotalMilliseconds;
                slot.TpotMsSum += sequence.TimePerOutputToken.TotalMilliseconds;
                track.Finished.Add(new FinishedRequest(sequence.FinishedAt ?? iteration.End, sequence.TimeToFirstToken, sequence.TimePerOutputToken, sequence.Generated));
                var duration = (sequence.FinishedAt ?? iteration.End) - sequence.AdmittedAt;
                if (duration > track.LongestRequest) track.LongestRequest = duration;
            }
        }
        foreach (var sequence in step.Admitted)
        {
            if (!_tracks.TryGetValue(sequence.Request.DeploymentId, out var track)) continue;
            var slot = track.SlotAt(index);
            slot.Admitted++;
            slot.AdmittedEstimate += sequence.Admission.EstimatedTokens;
        }
        foreach (var deploymentId in step.WaitedForGpu)
        {
            if (!_tracks.TryGetValue(deploymentId, out var track)) continue;
            track.SlotAt(index).GpuWaits++;
        }
        foreach (var refusal in step.Refused)
        {
            if (!_tracks.TryGetValue(refusal.DeploymentId, out var track)) continue;
            track.SlotAt(index).Refusals++;
            if (refusal.Admission.Outcome == Serving.AdmissionOutcome.OverRate) track.FirstRefusalAt ??= step.At;
        }
    }

    /// <summary>Share of the fleet's time spent running iterations between two moments (whole slots).</summary>
    public double GpuUtilization(DateTimeOffset from, DateTimeOffset to)
    {
        double busy = 0, available = 0;
        for (var i = Math.Max(0, IndexOf(from)); i < IndexOf(to); i++)
        {
            var (seconds, nodes) = i < _gpu.Count ? _gpu[i] : (0, _gpu.Count > 0 ? _gpu[^1].Nodes : 0);
            busy += seconds;
            available += nodes * resolution.TotalSeconds;
        }
        return available == 0 ? 0 : busy / available;
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

    /// <summary>Every finished request's latencies, in the order they finished.</summary>
    public List<FinishedRequest> Finished { get; } = [];

    /// <summary>The latencies of the requests that finished within the given spans.</summary>
    public Latencies LatenciesWithin(IEnumerable<(DateTimeOffset From, DateTimeOffset To)> spans)
    {
        var list = spans.ToList();
        return Latencies.Of([.. Finished.Where(r => list.Any(s => r.FinishedAt >= s.From && r.FinishedAt < s.To))]);
    }

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
            sum.GpuWaits += s.GpuWaits;
            sum.Throttles += s.Throttles;
            sum.Finished += s.Finished;
            sum.TtftMsSum += s.TtftMsSum;
            sum.TpotMsSum += s.TpotMsSum;
        }
        return sum;
    }
}

/// <summary>A finished request's latencies: from admission to its first token, and its mean time between output tokens.</summary>
public readonly record struct FinishedRequest(DateTimeOffset FinishedAt, TimeSpan TimeToFirstToken, TimeSpan TimePerOutputToken, int Generated);

/// <summary>Latency percentiles over a set of requests (nearest rank); time per output token over those with two tokens or more.</summary>
public sealed record Latencies(int Requests, TimeSpan TpotP50, TimeSpan TpotP99, TimeSpan TtftP50, TimeSpan TtftP99)
{
    public static Latencies Of(IReadOnlyCollection<FinishedRequest> requests)
    {
        var tpot = requests.Where(r => r.Generated > 1).Select(r => r.TimePerOutputToken).Order().ToArray();
        var ttft = requests.Select(r => r.TimeToFirstToken).Order().ToArray();
        return new Latencies(requests.Count, Percentile(tpot, 0.5), Percentile(tpot, 0.99), Percentile(ttft, 0.5), Percentile(ttft, 0.99));
    }

    public static TimeSpan Percentile(TimeSpan[] sorted, double quantile) =>
        sorted.Length == 0 ? TimeSpan.Zero : sorted[Math.Clamp((int)Math.Ceiling(quantile * sorted.Length) - 1, 0, sorted.Length - 1)];
}
