using System.Globalization;
using System.Text;
using Throughput.Benchmarks.Drills.Faults;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Drills.Failover;

/// <summary>The HA drill's Markdown report, its checks counted for CI, and the summary the benchmark runner prints.</summary>
public sealed record FailoverReport(string Markdown, IReadOnlyList<Check> Checks, BenchmarkReport Summary)
{
    /// <summary>The line infra/test.sh adds to its closing count.</summary>
    public string CountLine =>
        $"ha drill: {Checks.Count(c => c.Passed == true)} passed, {Checks.Count(c => c.Passed == false)} failed, {Checks.Count(c => c.Passed is null)} skipped";

    public static FailoverReport Of(FailoverResult r)
    {
        var checks = Verdicts(r);
        var primaries = r.Rounds.Where(x => x.ToNewPrimary is not null).ToList();
        var summary = new BenchmarkReport("ha",
        [
            new("rounds (recovered)", $"{r.Rounds.Count} ({r.Rounds.Count(x => x.Failure is null)})"),
            new("time to a new primary", primaries.Count == 0 ? "—" : string.Join(", ", primaries.Select(x => S(x.ToNewPrimary)))),
            new("ingestion gap per round", string.Join(", ", r.Rounds.Select(x => $"{x.Target.ToString().ToLowerInvariant()} {S(x.IngestionGap)}"))),
            new("records lost / double-counted", r.Checks.Count == 0 ? "—" : $"{r.Checks[^1].Settlement.Lost("metered totals")} / {r.Checks[^1].Settlement.DoubleCounted("metered totals")}", "0 / 0",
                r.Checks.Count > 0 && r.Checks.All(c => c.Settlement.Exact)),
            new("checks", $"{checks.Count(c => c.Passed == true)} passed, {checks.Count(c => c.Passed == false)} failed", "0 failed", checks.All(c => c.Passed != false)),
        ],
        [
            $"rounds {string.Join(", ", r.Plan.Rounds)}, {r.Plan.Round.TotalSeconds:0} s of load each",
            r.Aborted is null ? "every round recovered" : $"aborted: {r.Aborted}",
            $"report: {Path.GetFullPath(r.Plan.ReportPath)}",
        ]);
        return new FailoverReport(Write(r, checks), checks, summary);
    }

    static List<Check> Verdicts(FailoverResult r)
    {
        var checks = new List<Check>();
        foreach (var x in r.Rounds)
        {
            checks.Add(new Check($"round {x.Round}: {x.Target.ToString().ToLowerInvariant()} killed: writes, metering and the API back, the node back in the group", x.Failure is null,
                x.Failure ?? $"new primary {S(x.ToNewPrimary)}, metering after {S(x.IngestionGap)}, API after {S(x.ApiBack)}, rejoined after {S(x.Rejoined)}"));
            checks.Add(new Check($"round {x.Round}: the API answered 503 with Retry-After or 2xx, never another 5xx", x.Probe.ServerErrors == 0,
                $"{x.Probe.Ok} answers, {x.Probe.Unavailable} × 503 with Retry-After, {x.Probe.ServerErrors} other 5xx, {x.Probe.NoAnswer} without an answer"));
        }
        Settlement? previous = null;
        foreach (var c in r.Checks)
        {
            var s = c.Settlement;
            var gaps = BilledUsage.Views.Select(v => (View: v.Name, Lost: s.Lost(v.Name, previous), Doubled: s.DoubleCounted(v.Name, previous))).ToList();
            checks.Add(new Check($"round {c.Round}: no record lost or double-counted, token sums and invoice drafts equal", s.Exact,
                string.Join("; ", gaps.Select(g => $"{g.View}: {g.Lost} lost, {g.Doubled} double-counted")) + $"; {s.Differences().Count + s.Invoices().Sum(i => i.Differences.Count)} differences; {N(s.Confirmed)} of {N(s.HandedOver)} confirmed"));
            checks.Add(new Check($"round {c.Round}: the purchase pool sold exactly what the buyers hold, never more than it has", c.Pool.Exact && !c.Pool.Oversold && c.BuyerFailure is null,
                (c.BuyerFailure is null ? "" : $"{c.BuyerFailure}; ") + $"sold {c.Pool.Sold} of {c.Pool.Capacity} PTU, the buyers hold {c.Pool.Held} PTU ({c.PurchasesBought} bought, {c.PurchasesRefused} refused for capacity, {c.Released} released)"));
            checks.Add(new Check($"round {c.Round}: the archived customer's invoice draft byte-identical", c.DraftUnchanged, c.DraftUnchanged ? "identical" : "changed"));
            checks.Add(new Check($"round {c.Round}: no client saw a 5xx other than 503 with Retry-After", c.ServerErrors == 0, $"{c.Unavailable503} × 503 with Retry-After, {c.ServerErrors} other 5xx, since the start"));
            previous = s;
        }
        if (r.Checks.Count == 0) checks.Add(new Check("settled at least once", false, r.Aborted ?? "no settlement"));
        return checks;
    }

    static string Write(FailoverResult r, IReadOnlyList<Check> checks)
    {
        var md = new StringBuilder();
        md.AppendLine($"# HA drill {r.Started:yyyy-MM-dd HH:mm} UTC (run {r.Run})");
        md.AppendLine();
        md.AppendLine($"`bash infra/drills.sh {r.Plan.CommandLine}` — {(r.Finished - r.Started).TotalMinutes:0.0} min on {Environment.ProcessorCount} cores shared with other work (timings are noisy).");
        md.AppendLine();
        md.AppendLine(checks.All(c => c.Passed != false) ? "**every check passed**" : $"**{checks.Count(c => c.Passed == false)} checks FAILED**");
        if (r.Aborted is not null) md.AppendLine($"\nAborted: {r.Aborted}");
        md.AppendLine();
        md.AppendLine("Setup: `infra/drills/ha.sh` — a pg_auto_failover 2.0 monitor (:5450) and two PostgreSQL 15 nodes a (:5451) and b (:5452), one primary and one synchronous standby " +
                      "(`synchronous_standby_names = ANY 1 (…)`, `synchronous_commit = on`: a commit is acknowledged once it is on both), the monitor's default timeouts; " +
                      $"one platform host (all roles; log `{r.HostLog}`) connecting with `THROUGHPUT_PG_HOSTS` (`Target Session Attributes=read-write`); the scratch RabbitMQ node of the fault drill. " +
                      $"Load: the fault drill's {r.Plan.Nodes} serving nodes running the Flywheel batcher for {string.Join("; ", r.World.Deployments.Select(d => $"{d.Customer.Customer.Name} {d.Customer.Customer.Ptu} PTU{(d.Spillover ? " with spillover" : "")}"))}, " +
                      $"and {r.Plan.Buyers} buyers keeping a {r.Plan.BuyPoolPtu} PTU pool full (0.5 PTU purchases with an Idempotency-Key, retried after a 503; a refusal releases the oldest).");
        md.AppendLine();
        md.Append(Machine.Markdown(r.Machine));
        md.AppendLine();
        md.AppendLine("## Rounds");
        md.AppendLine();
        md.AppendLine("Kill: SIGKILL of the member's pg_autoctl and its PostgreSQL together (a lost machine; PostgreSQL alone would just be restarted by its keeper). " +
                      "New primary: until the monitor reports another node taking writes. Metering: until the newest usage event's sequence moved past its first value read after the kill. " +
                      "API: until the tenant's reads (every 250 ms) answered again after a failed one (0: none failed). Rejoined: from starting the killed member again until it was back in the group (a node as the secondary).");
        md.AppendLine();
        md.AppendLine("| round | at (UTC) | killed | primary before → after | new primary | metering back | API back | rejoined | API reads: ok / 503 / other 5xx / no answer | ok |");
        md.AppendLine("|---:|---|---|---|---:|---:|---:|---:|---|---|");
        foreach (var x in r.Rounds)
        {
            md.AppendLine($"| {x.Round} | {x.At:HH:mm:ss} | {x.Target.ToString().ToLowerInvariant()} ({x.Node}) | → {x.PrimaryAfter} | {S(x.ToNewPrimary)} | {S(x.IngestionGap)} | {S(x.ApiBack)} | {S(x.Rejoined)} | " +
                          $"{x.Probe.Ok} / {x.Probe.Unavailable} / {x.Probe.ServerErrors} / {x.Probe.NoAnswer} | {(x.Failure is null ? "yes" : $"**{x.Failure}**")} |");
        }
        md.AppendLine();
        md.AppendLine("## Exactness after each round");
        md.AppendLine();
        md.AppendLine("With the load paused and the publishers flushed: per deployment, the records and tokens the serving nodes published against the deployments' metered totals, the usage series and the invoice drafts (the fault drill's settlement); " +
                      "the purchase pool's sold PTU against what the buyers hold by their own count; and the invoice draft of a customer whose deployment was bought and released before the first round — its lines, total and usage, `asOf` and `projectedThrough` left out — byte for byte against its copy from before the first round.");
        md.AppendLine();
        md.AppendLine("| round | published (total) | " + string.Join(" | ", BilledUsage.Views.Select(v => $"{v.Name}: billed, lost, double")) + " | sums + drafts | pool sold / held / capacity | purchases bought / refused / released | archived draft | 503s / other 5xx so far |");
        md.AppendLine("|---:|---:|" + string.Concat(BilledUsage.Views.Select(_ => "---|")) + "---|---|---|---|---|");
        Settlement? previous = null;
        foreach (var c in r.Checks)
        {
            var s = c.Settlement;
            var differences = s.Differences().Count + s.Invoices().Sum(i => i.Differences.Count);
            md.AppendLine($"| {c.Round} | {N(s.PublishedRecords())} | " + string.Join(" | ", BilledUsage.Views.Select(v => $"{N(s.BilledRecords(v.Name))}, {s.Lost(v.Name, previous)}, {s.DoubleCounted(v.Name, previous)}")) +
                          $" | {(differences == 0 ? "equal" : $"**{differences} differences**")} | {c.Pool.Sold} / {c.Pool.Held} / {c.Pool.Capacity} | {c.PurchasesBought} / {c.PurchasesRefused} / {c.Released} | {(c.DraftUnchanged ? "identical" : "**changed**")} | {c.Unavailable503} / {c.ServerErrors} |");
            previous = s;
        }
        md.AppendLine();
        md.AppendLine("## The monitor's view");
        md.AppendLine();
        md.AppendLine("Before:");
        md.AppendLine();
        md.AppendLine("```");
        md.AppendLine(r.StateBefore.TrimEnd());
        md.AppendLine("```");
        md.AppendLine();
        md.AppendLine("After:");
        md.AppendLine();
        md.AppendLine("```");
        md.AppendLine(r.StateAfter.TrimEnd());
        md.AppendLine("```");
        md.AppendLine();
        md.AppendLine("## Checks");
        md.AppendLine();
        foreach (var c in checks) md.AppendLine($"- {(c.Passed switch { true => "passed", false => "**FAILED**", null => "skipped" })}: {c.Name} — {c.Detail}");
        return md.ToString();
    }

    static string S(TimeSpan? span) => span is { } s ? s.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s" : "—";

    static string N(long value) => value.ToString("#,0", CultureInfo.InvariantCulture);
}
