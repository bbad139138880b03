using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Serving;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>
/// What one serving node did while a fault was in effect: tokens its GPUs served, requests admitted within the purchased
/// rate, spilled or refused, and per deployment how much the local buckets gave out against what the last known limit
/// allows. Fed by the node's loop under its lock, one iteration at a time.
/// </summary>
public sealed class OutageWindow
{
    readonly Dictionary<string, Budget> _budgets;

    OutageWindow(DateTimeOffset from, Dictionary<string, Budget> budgets)
    {
        From = To = from;
        _budgets = budgets;
    }

    public DateTimeOffset From { get; }

    /// <summary>The last iteration observed; the window's end once it is closed.</summary>
    public DateTimeOffset To { get; private set; }

    public double ServedWeighted => _budgets.Values.Sum(b => b.Served);

    /// <summary>Weighted tokens served per deployment.</summary>
    public IReadOnlyDictionary<string, double> ServedBy => _budgets.ToDictionary(p => p.Key, p => p.Value.Served);

    public long Finished { get; private set; }

    public long AdmittedWithinRate { get; private set; }

    public long Spilled { get; private set; }

    public long Refused { get; private set; }

    /// <summary>Opens a window now: each deployment's bucket as it stands and the limit the node knows.</summary>
    public static OutageWindow Open(DateTimeOffset at, AdmissionCache cache, IEnumerable<string> deployments)
    {
        var budgets = new Dictionary<string, Budget>(StringComparer.Ordinal);
        foreach (var id in deployments)
        {
            if (cache.Bucket(id) is { } bucket) budgets[id] = new Budget(bucket.Limit, bucket.Tokens);
        }
        return new OutageWindow(at, budgets);
    }

    public void Observe(FleetStep step)
    {
        To = step.At;
        foreach (var served in step.Iterations.SelectMany(i => i.Iteration.Served))
        {
            if (!_budgets.TryGetValue(served.DeploymentId, out var b)) continue;
            b.Served += served.PromptTokens + served.CachedTokens * (1 - (double)b.Limit.CachedDeduction) + (double)b.Limit.OutputWeight * served.GeneratedTokens;
        }
        foreach (var sequence in step.Admitted)
        {
            if (!sequence.Admission.IsSpilled && _budgets.TryGetValue(sequence.Request.DeploymentId, out var b))
            {
                AdmittedWithinRate++;
                b.Drawn += sequence.Admission.EstimatedTokens;
                b.LargestEstimate = Math.Max(b.LargestEstimate, sequence.Admission.EstimatedTokens);
            }
            else
            {
                Spilled++;
            }
        }
        Refused += step.Refused.Count;
        foreach (var sequence in step.Finished)
        {
            Finished++;
            // The bucket gets back what the estimate took beyond the actual cost (Fleet.Step has just reconciled it).
            if (sequence.Admission.Outcome == AdmissionOutcome.Admitted && _budgets.TryGetValue(sequence.Request.DeploymentId, out var b))
                b.Drawn -= sequence.Admission.EstimatedTokens - b.Weighted(sequence.Request.PromptTokens, sequence.Request.CachedTokens, sequence.Generated);
        }
    }

    public TimeSpan Duration => To - From;

    /// <summary>
    /// Per deployment: weighted tokens the bucket gave out within the rate during the window (admitted estimates less what
    /// completions gave back), and what the last known limit allows: the tokens the bucket held at the start, plus the
    /// purchased rate over the window, plus one request's estimate (a request larger than the bucket may leave it in debt).
    /// </summary>
    public IEnumerable<(string DeploymentId, double Drawn, double Allowed)> WithinRate() =>
        _budgets.Select(p => (p.Key, p.Value.Drawn, Math.Max(0, p.Value.StartTokens) + p.Value.Limit.TokensPerMinute / 60d * Duration.TotalSeconds + p.Value.LargestEstimate));

    sealed class Budget(AdmissionLimitChanged limit, double startTokens)
    {
        public AdmissionLimitChanged Limit { get; } = limit;

        public double StartTokens { get; } = startTokens;

        public double Drawn { get; set; }

        public double Served { get; set; }

        public long LargestEstimate { get; set; }

        public double Weighted(long prompt, long cached, long output) =>
            Math.Max(0, prompt - cached * (double)Limit.CachedDeduction) + (double)Limit.OutputWeight * output;
    }
}
