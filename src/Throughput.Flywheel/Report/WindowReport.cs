namespace Throughput.Flywheel.Report;

/// <summary>One deployment in one reporting window. <see cref="Ratio"/> is served weighted tokens ÷ what the purchased rate allows.</summary>
public sealed record WindowRow(
    string Name, string DeploymentId, int Index, TimeSpan From, TimeSpan To, long TokensPerMinute,
    long Prompt, long Cached, long Generated, double Weighted, double Purchased, long Refusals, long Throttles, long Finished,
    double TtftMs, double TpotMs, int? Queued, decimal? Utilization, bool Steady)
{
    public double Ratio => Purchased <= 0 ? 0 : Weighted / Purchased;

    /// <summary>Served weighted tokens scaled to a minute.</summary>
    public double WeightedPerMinute => Weighted / (To - From).TotalMinutes;
}

/// <summary>A deployment's served rate over its steady windows: backlogged, burst spent, no rate change still showing.</summary>
public sealed record SteadyState(string Name, string DeploymentId, IReadOnlyList<WindowRow> Windows)
{
    public double Weighted => Windows.Sum(w => w.Weighted);

    public double Purchased => Windows.Sum(w => w.Purchased);

    public double Ratio => Purchased <= 0 ? double.NaN : Weighted / Purchased;
}

/// <summary>How a deployment's served rate followed a change of its purchased rate.</summary>
/// <param name="ReachedAfter">From the change until served tokens per minute (over a short trailing span) first reached the share asked of the new rate.</param>
public sealed record RateRise(string Name, long FromTokensPerMinute, long ToTokensPerMinute, DateTimeOffset ChangedAt, TimeSpan? ReachedAfter, WindowRow? FirstWindow);

public static class WindowReport
{
    /// <summary>Every complete window of a deployment from the start of the tally up to <paramref name="end"/>.</summary>
    public static IReadOnlyList<WindowRow> Of(Tally tally, Track track, TimeSpan window, DateTimeOffset end)
    {
        var rows = new List<WindowRow>();
        for (var index = 0; tally.Start + window * (index + 1) <= end; index++) rows.Add(Row(tally, track, index, window));
        return rows;
    }

    public static WindowRow Row(Tally tally, Track track, int index, TimeSpan window)
    {
        var from = tally.Start + window * index;
        var to = from + window;
        var sum = track.Sum(from, to);
        var sample = track.LastSampleBefore(to);
        return new WindowRow(
            track.Name, track.DeploymentId, index, from - tally.Start, to - tally.Start, track.RateAt(to),
            sum.Prompt + sum.Cached, sum.Cached, sum.Generated, sum.Weighted, track.PurchasedBetween(from, to), sum.Refusals, sum.Throttles, sum.Finished,
            sum.Finished == 0 ? 0 : sum.TtftMsSum / sum.Finished, sum.Finished == 0 ? 0 : sum.TpotMsSum / sum.Finished,
            sample?.Queued, sample?.Utilization, IsSteady(track, from, to, sum.Refusals + sum.GpuWaits));
    }

    public static SteadyState Steady(Tally tally, Track track, TimeSpan window, DateTimeOffset end) =>
        new(track.Name, track.DeploymentId, [.. Of(tally, track, window, end).Where(w => w.Steady)]);

    /// <summary>
    /// A window is steady when the deployment was backlogged in it (admission refused it, or its requests waited for room on
    /// full GPUs), it holds no change of rate, and the requests running when the burst was spent or the rate changed have
    /// finished (and the refunds they gave back too).
    /// </summary>
    static bool IsSteady(Track track, DateTimeOffset from, DateTimeOffset to, long backlogged)
    {
        if (backlogged == 0 || track.Rates.Count == 0 || track.FirstRefusalAt is not { } burstSpent) return false;
        var segment = -1;
        for (var i = 0; i < track.Rates.Count; i++)
        {
            if (track.Rates[i].At <= from) segment = i;
            else if (track.Rates[i].At < to) return false;
        }
        if (segment < 0) return false;
        // Three request lifetimes: one for the requests of the burst (or of the old rate) to finish, two for the echo of their
        // refunds (estimate − actual, given back at completion and admitted again, a tenth as large each time) to fade.
        var settledAt = (segment == 0 || track.Rates[segment].At < burstSpent ? burstSpent : track.Rates[segment].At) + 3 * track.LongestRequest;
        return from >= settledAt;
    }

    /// <summary>For each change of the purchased rate after the first: how soon served tokens per minute reached <paramref name="share"/> of the new rate.</summary>
    public static IReadOnlyList<RateRise> Rises(Tally tally, Track track, TimeSpan window, DateTimeOffset end, double share = 0.98, TimeSpan? trailing = null)
    {
        var span = trailing ?? TimeSpan.FromSeconds(5);
        var slotsPerSpan = Math.Max(1, (int)Math.Round(span / tally.Resolution));
        var rises = new List<RateRise>();
        var rows = Of(tally, track, window, end);
        for (var i = 1; i < track.Rates.Count; i++)
        {
            var (changedAt, to) = track.Rates[i];
            var from = track.Rates[i - 1].TokensPerMinute;
            TimeSpan? reached = null;
            var first = tally.IndexOf(changedAt) + 1;
            for (var slot = first + slotsPerSpan - 1; slot < track.Slots.Count && tally.StartOf(slot + 1) <= end; slot++)
            {
                var weighted = 0d;
                for (var k = slot - slotsPerSpan + 1; k <= slot; k++) weighted += track.Slots[k].Weighted;
                if (weighted / (span.TotalMinutes) >= share * to)
                {
                    reached = tally.StartOf(slot + 1) - changedAt;
                    break;
                }
            }
            rises.Add(new RateRise(track.Name, from, to, changedAt, reached, rows.FirstOrDefault(r => tally.Start + r.From >= changedAt)));
        }
        return rises;
    }
}
