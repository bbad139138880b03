using Throughput.Metering;

namespace Throughput.Deployments;

/// <summary>The records one producer's batch (one sequence number) holds for one deployment.</summary>
public sealed record ProducerBatch(string ProducerId, long Sequence, IReadOnlyList<MeteredRecord> Records);

/// <summary>
/// Folds metered usage into a deployment: fills the leaky bucket with the weighted tokens of what was not spilled,
/// throttles at 100% and lifts below the release threshold. Duplicates were already removed by the dedupe ledger.
/// </summary>
public static class Meter
{
    public static decimal Weighted(Deployment d, in MeteredRecord r) =>
        r.PromptTokens - r.CachedTokens * d.CachedDeduction + d.OutputWeight * r.OutputTokens;

    public static object[] Decide(Deployment deployment, IReadOnlyList<ProducerBatch> batches, DateTimeOffset now)
    {
        var fresh = batches.DistinctBy(b => (b.ProducerId, b.Sequence)).ToList();
        if (fresh.Count == 0) return [];

        long records = 0, prompt = 0, cached = 0, output = 0, spilledRecords = 0, spilledPrompt = 0, spilledCached = 0, spilledOutput = 0;
        decimal weighted = 0, bucketed = 0;
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
        List<object> events =
        [
            new UsageMetered(deployment.Id, producers, records, prompt, cached, output, weighted,
                spilledRecords, spilledPrompt, spilledCached, spilledOutput, firstStarted, lastFinished, level, utilization, deployment.Limit.TokensPerMinute, at),
        ];
        if (!deployment.Throttled && utilization >= 1)
            events.Add(new DeploymentThrottled(deployment.Id, utilization, deployment.RetryAfterMs(level), at));
        else if (deployment.Throttled && utilization < Deployment.ReleaseThreshold)
            events.Add(new ThrottleLifted(deployment.Id, level, utilization, at));
        return [.. events];
    }

    /// <summary>An idle throttled deployment is released once its bucket has drained, even if no usage arrives.</summary>
    public static object[] LiftIfDrained(Deployment deployment, DateTimeOffset now)
    {
        if (!deployment.Throttled) return [];
        var level = deployment.LevelAt(now);
        var utilization = deployment.UtilizationOf(level);
        return utilization < Deployment.ReleaseThreshold || deployment.Status == DeploymentStatus.Released
            ? [new ThrottleLifted(deployment.Id, level, utilization, now)]
            : [];
    }
}
