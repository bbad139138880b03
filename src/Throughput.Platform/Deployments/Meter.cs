using Throughput.Metering;

namespace Throughput.Deployments;

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
}

/// <summary>
/// Folds metered usage into a deployment: fills the leaky bucket with the weighted tokens of what was not spilled,
/// throttles at 100% and lifts below the release threshold. Duplicates were already removed by the dedupe ledger.
/// </summary>
public static class Meter
{
    public static decimal Weighted(Deployment d, in MeteredRecord r) =>
        r.PromptTokens - r.CachedTokens * d.CachedDeduction + d.OutputWeight * r.OutputTokens;

    /// <summary>Null when every batch was a duplicate within the consumer batch.</summary>
    public static MeterDecision? Decide(Deployment deployment, IReadOnlyList<ProducerBatch> batches, DateTimeOffset now)
    {
        var fresh = batches.DistinctBy(b => (b.ProducerId, b.Sequence)).ToList();
        if (fresh.Count == 0) return null;

        long records = 0, prompt = 0, cached = 0, output = 0, spilledRecords = 0, spilledPrompt = 0, spilledCached = 0, spilledOutput = 0;
        decimal weighted = 0, bucketed = 0;
        Dictionary<int, MonthlyUsage>? months = null; // only once a record finishes in another month than the first
        var firstMonth = -1;
        var firstStarted = DateTimeOffset.MaxValue;
        var lastFinished = DateTimeOffset.MinValue;
        foreach (var batch in fresh)
        {
            foreach (var r in batch.Records)
            {
                var w = Weighted(deployment, r);
                records++;
                prompt += r.PromptTokens;
                cached += r.CachedTokens;
                output += r.OutputTokens;
                weighted += w;
                if (r.Spilled)
                {
                    spilledRecords++;
                    spilledPrompt += r.PromptTokens;
                    spilledCached += r.CachedTokens;
                    spilledOutput += r.OutputTokens;
                }
                else
                {
                    bucketed += w;
                }
                var month = r.FinishedAt.UtcDateTime.Year * 12 + r.FinishedAt.UtcDateTime.Month - 1;
                if (firstMonth < 0) firstMonth = month;
                if (month != firstMonth && months is null) months = Split(fresh, firstMonth);
                if (months is not null) months[month] = Add(months.GetValueOrDefault(month) ?? Empty(month), r);
                if (r.StartedAt < firstStarted) firstStarted = r.StartedAt;
                if (r.FinishedAt > lastFinished) lastFinished = r.FinishedAt;
            }
        }

        var at = now > deployment.BucketAt ? now : deployment.BucketAt;
        var level = deployment.LevelAt(at) + bucketed;
        var utilization = deployment.UtilizationOf(level);
        var producers = fresh.GroupBy(b => b.ProducerId)
            .Select(g => new ProducerRange(g.Key, g.Min(b => b.Sequence), g.Max(b => b.Sequence)))
            .ToList();
        var usage = new UsageMetered(deployment.Id, producers, records, prompt, cached, output, weighted,
            spilledRecords, spilledPrompt, spilledCached, spilledOutput, firstStarted, lastFinished, level, utilization, deployment.Limit.TokensPerMinute, at,
            months is null ? null : [.. months.OrderBy(m => m.Key).Select(m => m.Value)]);
        if (deployment.Status == DeploymentStatus.Released) return new(usage, null); // late usage: nothing left to throttle
        if (!deployment.Throttled && utilization >= 1)
            return new(usage, new DeploymentThrottled(deployment.Id, utilization, deployment.RetryAfterMs(level), at));
        if (deployment.Throttled && utilization < Deployment.ReleaseThreshold)
            return new(usage, new ThrottleLifted(deployment.Id, level, utilization, at));
        return new(usage, null);
    }

    static MonthlyUsage Empty(int month) => new($"{month / 12:D4}-{month % 12 + 1:D2}", 0, 0, 0, 0, 0, 0, 0);

    static MonthlyUsage Add(MonthlyUsage m, in MeteredRecord r) => m with
    {
        Records = m.Records + 1,
        PromptTokens = m.PromptTokens + r.PromptTokens,
        CachedTokens = m.CachedTokens + r.CachedTokens,
        OutputTokens = m.OutputTokens + r.OutputTokens,
        SpilledPromptTokens = m.SpilledPromptTokens + (r.Spilled ? r.PromptTokens : 0),
        SpilledCachedTokens = m.SpilledCachedTokens + (r.Spilled ? r.CachedTokens : 0),
        SpilledOutputTokens = m.SpilledOutputTokens + (r.Spilled ? r.OutputTokens : 0),
    };

    /// <summary>The first month's share of the records seen so far: all of them finished in it.</summary>
    static Dictionary<int, MonthlyUsage> Split(List<ProducerBatch> batches, int firstMonth)
    {
        var first = Empty(firstMonth);
        foreach (var batch in batches)
            foreach (var r in batch.Records)
            {
                if (r.FinishedAt.UtcDateTime.Year * 12 + r.FinishedAt.UtcDateTime.Month - 1 != firstMonth) return new() { [firstMonth] = first };
                first = Add(first, r);
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
