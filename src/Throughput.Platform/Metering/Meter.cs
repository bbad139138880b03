using Throughput.Deployments;

namespace Throughput.Metering;

/// <summary>The records one producer's batch (one sequence number) holds for one deployment.</summary>
public sealed record ProducerBatch(string ProducerId, long Sequence, IReadOnlyList<MeteredRecord> Records);

/// <summary>What one consumer batch meters for one deployment: its usage, and a throttle or a lift when the bucket crossed a threshold.</summary>
public sealed record MeterDecision(UsageMetered Usage, DeploymentEvent? Transition)
{
    public Deployment Applied(Deployment deployment)
    {
        var metered = deployment.Metered(Usage);
        return Transition is null ? metered : metered.Then(Transition);
    }

    /// <summary>The deployment's meter after this decision: <see cref="Applied"/>'s, without building the whole deployment when only usage moved it.</summary>
    public DeploymentMeter MeterOf(Deployment deployment) =>
        Transition is null ? DeploymentMeter.Of(deployment, 0).Then(Usage) : DeploymentMeter.Of(Applied(deployment), 0);
}

/// <summary>
/// Folds metered usage into a deployment: fills the leaky bucket with the weighted tokens of what was not spilled,
/// throttles at 100% and lifts below the release threshold. The dedupe ledger removed messages counted by earlier consumer
/// batches; one delivered twice within this consumer batch is here twice and counts once.
/// </summary>
public static class Meter
{
    public static decimal Weighted(Deployment d, in MeteredRecord r) =>
        r.PromptTokens - r.CachedTokens * d.CachedDeduction + d.OutputWeight * r.OutputTokens;

    /// <summary>Null when every batch was a duplicate within the consumer batch.</summary>
    public static MeterDecision? Decide(Deployment deployment, IReadOnlyList<ProducerBatch> batches, DateTimeOffset now)
    {
        var fresh = Distinct(batches);
        if (fresh.Count == 0) return null;

        TokenCounts tokens = default;
        decimal weighted = 0, bucketed = 0;
        Dictionary<int, TokenCounts>? months = null; // only once a record finishes in another month than the first
        var firstMonth = -1;
        var adapters = deployment.Adapters is null ? null : new Dictionary<(string, int), (TokenCounts Tokens, decimal Weighted)>();
        var firstStarted = DateTimeOffset.MaxValue;
        var lastFinished = DateTimeOffset.MinValue;
        foreach (var batch in fresh)
        {
            // Indexed, not foreach: an enumerator over the interface is an allocation per producer batch, and there is one
            // per deployment and message, thousands per consumer batch when the deployments are many.
            for (var i = 0; i < batch.Records.Count; i++)
            {
                var r = batch.Records[i];
                var w = Weighted(deployment, r);
                var counts = r.Counts;
                tokens += counts;
                weighted += w;
                if (!r.Spilled) bucketed += w;
                var month = MonthOf(r);
                if (firstMonth < 0) firstMonth = month;
                if (month != firstMonth && months is null) months = Split(fresh, firstMonth);
                if (months is not null) months[month] = months.GetValueOrDefault(month) + counts;
                if (adapters is not null)
                {
                    var (t, aw) = adapters.GetValueOrDefault((r.AdapterId!, month));
                    adapters[(r.AdapterId!, month)] = (t + counts, aw + w);
                }
                if (r.StartedAt < firstStarted) firstStarted = r.StartedAt;
                if (r.FinishedAt > lastFinished) lastFinished = r.FinishedAt;
            }
        }

        var at = now > deployment.BucketAt ? now : deployment.BucketAt;
        var level = deployment.LevelAt(at) + bucketed;
        var utilization = deployment.UtilizationOf(level);
        var producers = RangesOf(fresh);
        var usage = new UsageMetered(deployment.Id, deployment.TenantId, producers, tokens, weighted, firstStarted, lastFinished, level, utilization,
            deployment.Limit.TokensPerMinute, at, months is null ? null : [.. months.OrderBy(m => m.Key).Select(m => new MonthlyUsage(MonthName(m.Key), m.Value))],
            adapters is null ? null : [.. adapters.OrderBy(a => a.Key.Item1, StringComparer.Ordinal).ThenBy(a => a.Key.Item2)
                .Select(a => new AdapterUsage(a.Key.Item1, MonthName(a.Key.Item2), a.Value.Tokens, a.Value.Weighted))]);
        if (deployment.Status == DeploymentStatus.Released) return new(usage, null); // late usage: nothing left to throttle
        if (!deployment.Throttled && utilization >= 1)
            return new(usage, new DeploymentThrottled(deployment.Id, utilization, deployment.RetryAfterMs(level), at));
        if (deployment.Throttled && utilization < Deployment.ReleaseThreshold)
            return new(usage, new ThrottleLifted(deployment.Id, level, utilization, at));
        return new(usage, null);
    }

    /// <summary>The batches once each, in order: one delivered twice within the consumer batch counts once.</summary>
    static IReadOnlyList<ProducerBatch> Distinct(IReadOnlyList<ProducerBatch> batches)
    {
        if (batches.Count < 2) return batches;
        HashSet<(string, long)> seen = [];
        List<ProducerBatch> fresh = new(batches.Count);
        for (var i = 0; i < batches.Count; i++)
            if (seen.Add((batches[i].ProducerId, batches[i].Sequence))) fresh.Add(batches[i]);
        return fresh;
    }

    /// <summary>Each producer's lowest and highest sequence, in the order the producers first appear.</summary>
    static List<ProducerRange> RangesOf(IReadOnlyList<ProducerBatch> batches)
    {
        List<ProducerRange> ranges = new(1);
        for (var i = 0; i < batches.Count; i++)
        {
            var b = batches[i];
            var at = 0;
            while (at < ranges.Count && ranges[at].ProducerId != b.ProducerId) at++;
            if (at == ranges.Count) ranges.Add(new ProducerRange(b.ProducerId, b.Sequence, b.Sequence));
            else ranges[at] = new ProducerRange(b.ProducerId, Math.Min(ranges[at].FirstSequence, b.Sequence), Math.Max(ranges[at].LastSequence, b.Sequence));
        }
        return ranges;
    }

    /// <summary>Months counted from year 0: the calendar month (UTC) a record finished in.</summary>
    static int MonthOf(in MeteredRecord r) => r.FinishedAt.UtcDateTime.Year * 12 + r.FinishedAt.UtcDateTime.Month - 1;

    static string MonthName(int month) => $"{month / 12:D4}-{month % 12 + 1:D2}";

    /// <summary>The first month's share of the records seen so far: all of them finished in it.</summary>
    static Dictionary<int, TokenCounts> Split(IReadOnlyList<ProducerBatch> batches, int firstMonth)
    {
        TokenCounts first = default;
        foreach (var batch in batches)
            foreach (var r in batch.Records)
            {
                if (MonthOf(r) != firstMonth) return new() { [firstMonth] = first };
                first += r.Counts;
            }
        return new() { [firstMonth] = first };
    }

    /// <summary>An idle throttled deployment is released once its bucket has drained, even if no usage arrives.</summary>
    public static ThrottleLifted? LiftIfDrained(Deployment deployment, DateTimeOffset now)
    {
        if (!deployment.Throttled) return null;
        var level = deployment.LevelAt(now);
        var utilization = deployment.UtilizationOf(level);
        return utilization < Deployment.ReleaseThreshold || deployment.Status == DeploymentStatus.Released
            ? new ThrottleLifted(deployment.Id, level, utilization, now)
            : null;
    }
}
