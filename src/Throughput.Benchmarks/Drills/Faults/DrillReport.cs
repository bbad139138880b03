using System.Globalization;
using System.Text;
using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>One verdict of the drill; <see cref="Passed"/> null when it could not be judged (skipped).</summary>
public sealed record Check(string Name, bool? Passed, string Detail);

/// <summary>The drill's Markdown report, its checks counted for CI, and the summary the benchmark runner prints.</summary>
public sealed record DrillReport(string Markdown, IReadOnlyList<Check> Checks, BenchmarkReport Summary)
{
    const string Totals = "metered totals";

    /// <summary>The line infra/test.sh adds to its closing count.</summary>
    public string CountLine =>
        $"fault drill: {Checks.Count(c => c.Passed == true)} passed, {Checks.Count(c => c.Passed == false)} failed, {Checks.Count(c => c.Passed is null)} skipped";

    /// <summary>Writes a drill's report and prints its count line, the one infra/test.sh counts.</summary>
    public static async Task SaveAsync(string path, string markdown, string countLine, Action<string> log)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await File.WriteAllTextAsync(path, markdown, CancellationToken.None);
        log($"report written to {Path.GetFullPath(path)}");
        Console.WriteLine(countLine);
    }

    public static DrillReport Of(DrillResult r)
    {
        var checks = Verdicts(r);
        var final = r.Settlements.Count == 0 ? null : r.Settlements[^1];
        var views = BilledUsage.Views.Select(v => v.Name).ToList();
        long Lost() => final is null ? 0 : views.Max(v => final.Lost(v));
        long Doubled() => final is null ? 0 : views.Max(v => final.DoubleCounted(v));
        var exact = final is not null && r.Settlements.All(s => s.Exact);
        var servedEverywhere = r.Faults.Count > 0 && r.Faults.All(f => f.Served > 0);
        var withinLimits = r.Faults.All(f => f.WithinLimits);
        var summary = new BenchmarkReport("faults",
        [
            new("faults inflicted (recovered)", $"{r.Faults.Count} ({r.Faults.Count(f => f.Failure is null)})"),
            new("records published (broker-confirmed)", N(final?.Confirmed ?? 0)),
            new("records lost (worst view)", N(Lost()), "0", final is not null && Lost() == 0),
            new("records double-counted (worst view)", N(Doubled()), "0", final is not null && Doubled() == 0),
            new("token sums and invoice drafts equal, every round", exact ? "yes" : $"NO: {r.Settlements.Sum(s => s.Differences().Count + s.Invoices().Sum(i => i.Differences.Count))} differences", "equal", exact),
            new("batcher served during every outage", servedEverywhere ? $"yes, at least {N(r.Faults.Min(f => f.Served))} weighted tokens" : "NO", "> 0", servedEverywhere),
            new("within its last known limits", withinLimits ? $"yes, peak {r.Faults.Select(f => f.TightestShare).DefaultIfEmpty(0).Max():P0} of allowed" : "NO", "always", withinLimits),
        ],
        [
            $"{r.Plan.Rounds} rounds of {string.Join(", ", r.Plan.Faults)} over {r.Plan.Load.TotalMinutes:0.#} min of load, {r.Plan.Down.TotalSeconds:0.#} s down{(r.Plan.Rounds > 1 ? $" ({r.Plan.LongDown.TotalSeconds:0.#} s for PostgreSQL's crash in even rounds)" : "")}",
            $"scratch services '{r.Services.Name}': PostgreSQL :{r.Services.PostgresPort}, RabbitMQ :{r.Services.RabbitPort}",
            r.Aborted is null ? "every fault recovered" : $"aborted: {r.Aborted}",
            $"report: {Path.GetFullPath(r.Plan.ReportPath)}",
        ]);
        return new DrillReport(Write(r, checks), checks, summary);
    }

    static List<Check> Verdicts(DrillResult r)
    {
        var checks = new List<Check>();
        foreach (var s in r.Settlements)
        {
            var previous = r.Settlements.LastOrDefault(e => e.Round < s.Round);
            var gaps = BilledUsage.Views.Select(v => (View: v.Name, Lost: s.Lost(v.Name, previous), Doubled: s.DoubleCounted(v.Name, previous))).ToList();
            checks.Add(new Check($"round {s.Round}: no record lost or double-counted", gaps.All(g => g.Lost == 0 && g.Doubled == 0),
                string.Join("; ", gaps.Select(g => $"{g.View}: {g.Lost} lost, {g.Doubled} double-counted"))));
            var differences = s.Differences().Count + s.Invoices().Sum(i => i.Differences.Count);
            var skipped = s.Billed.Values.Any(b => b.Bill.Months > 1);
            checks.Add(new Check($"round {s.Round}: token sums, invoice drafts and broker confirms equal", differences == 0 && s.Confirmed == s.HandedOver,
                $"{differences} differences; {N(s.Confirmed)} of {N(s.HandedOver)} records confirmed{(skipped ? "; the run crossed a month boundary: invoice amounts not compared" : "")}"));
        }
        foreach (var f in r.Faults)
        {
            checks.Add(new Check($"round {f.Round}: {f.Kind}: recovered, served meanwhile, within the last known limits", f.Passed,
                f.Failure ?? $"{N(f.Served)} weighted tokens served in {f.Outage.TotalSeconds:0.0} s; peak {f.TightestShare:P0} of the allowance"));
        }
        if (r.Settlements.Count == 0) checks.Add(new Check("settled at least once", false, r.Aborted ?? "no settlement"));
        return checks;
    }

    static string Write(DrillResult r, IReadOnlyList<Check> checks)
    {
        var md = new StringBuilder();
        var final = r.Settlements.Count == 0 ? null : r.Settlements[^1];
        md.AppendLine($"# Fault drill {r.Started:yyyy-MM-dd HH:mm} UTC (run {r.Run})");
        md.AppendLine();
        md.AppendLine($"`bash infra/drills.sh {r.Plan.CommandLine}` — {(r.Finished - r.Started).TotalMinutes:0.0} min on {Environment.ProcessorCount} cores shared with other work (timings are noisy).");
        md.AppendLine();
        var verdict = checks.All(c => c.Passed != false) ? "**every check passed**" : $"**{checks.Count(c => c.Passed == false)} checks FAILED**";
        md.AppendLine($"{verdict}: {(final is null ? "no settlement" : $"{N(final.Confirmed)} records published, " + string.Join(", ", BilledUsage.Views.Select(v => $"{v.Name} {N(final.BilledRecords(v.Name))} billed ({final.Lost(v.Name)} lost, {final.DoubleCounted(v.Name)} double-counted)")))}.");
        if (r.Aborted is not null) md.AppendLine($"\nAborted: {r.Aborted}");
        md.AppendLine();
        md.AppendLine($"Setup: scratch PostgreSQL cluster and RabbitMQ node '{r.Services.Name}' (:{r.Services.PostgresPort}, :{r.Services.RabbitPort}) from infra/drills/nodes.sh; one platform host process (all roles; log `{r.HostLog}`); " +
            $"{r.Nodes.Count} serving nodes, each the reference Flywheel batcher ({r.Plan.Fleet.Nodes} simulated GPUs × {r.Plan.Fleet.TokenBudget:N0} tokens per {r.Plan.Fleet.IterationTime.TotalMilliseconds:0} ms) with its own AdmissionCache, AdmissionFeed and MeteringPublisher, sharing every deployment's traffic and each holding its own lease on every deployment (docs/replicas.md). " +
            $"{r.World.Model} in {r.World.Region}: " + string.Join("; ", r.World.Deployments.Select(d => $"{d.Customer.Customer.Name} ({d.Customer.Customer.Workload.Name}) {d.Customer.Customer.Ptu} PTU{(d.Spillover ? " with spillover" : "")}, offered {d.OfferedFactor}×")) + ".");
        md.AppendLine();

        md.Append(Machine.Markdown(r.Machine));
        md.AppendLine();
        md.AppendLine("## What was faulted when");
        md.AppendLine();
        md.AppendLine("Back: from the fault until what was faulted was started again (for a cut: until the broker had closed the connections). Outage: until the platform was whole again (host ready: PostgreSQL reachable, bus connected; for a cut: the node's publisher and feed reconnected). Served: weighted tokens the batcher's GPUs processed meanwhile; " +
                      "within rate: admitted from the local bucket; allowance: the bucket's tokens at the start + the purchased rate over the outage + one request (a request larger than the bucket may go into debt).");
        md.AppendLine();
        var deployments = r.World.Deployments;
        md.AppendLine($"| round | at (UTC) | +s | fault | back | outage | served (weighted tokens) | of which {string.Join(" / ", deployments.Select(d => d.Customer.Customer.Name))} | requests finished | admitted within rate / spilled / refused | peak drawn ÷ allowance | ok |");
        md.AppendLine("|---:|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|");
        foreach (var f in r.Faults)
        {
            md.AppendLine(
                $"| {f.Round} | {f.At:HH:mm:ss} | {(f.At - r.Started).TotalSeconds:0} | {f.What}{(f.Failure is null ? "" : $" — **{f.Failure}**")} | {f.Repaired.TotalSeconds:0.0} s | {f.Outage.TotalSeconds:0.0} s | {N(f.Served)} | " +
                $"{string.Join(" / ", deployments.Select(d => N(f.ServedBy.GetValueOrDefault(d.Id))))} | {N(f.Windows.Sum(w => w.Finished))} | " +
                $"{N(f.Windows.Sum(w => w.AdmittedWithinRate))} / {N(f.Windows.Sum(w => w.Spilled))} / {N(f.Windows.Sum(w => w.Refused))} | {f.TightestShare:P0} | {(f.Passed ? "yes" : "**no**")} |");
        }
        md.AppendLine();

        md.AppendLine("## Published vs billed, per round");
        md.AppendLine();
        md.AppendLine("After each round the load pauses, the publishers flush, and the platform's three views are read until they agree (or the settle time runs out). Records are compared per deployment: lost = published − billed where positive, double-counted = billed − published where positive. " +
                      "Dead-lettered: messages in the partitions' `_error` queues (where MassTransit puts what its consumer gave up on).");
        md.AppendLine();
        md.AppendLine("| round | settled in | published (round / total) | broker-confirmed | " + string.Join(" | ", BilledUsage.Views.Select(v => $"{v.Name}: billed, lost, double")) + " | token sums + invoice | dead-lettered messages |");
        md.AppendLine("|---:|---:|---:|---:|" + string.Concat(BilledUsage.Views.Select(_ => "---|")) + "---|---:|");
        Settlement? previous = null;
        foreach (var s in r.Settlements)
        {
            var differences = s.Differences().Count + s.Invoices().Sum(i => i.Differences.Count);
            md.AppendLine($"| {s.Round} | {s.Took.TotalSeconds:0.0} s | {N(s.PublishedRecords(previous))} / {N(s.PublishedRecords())} | {N(s.Confirmed)} | " +
                string.Join(" | ", BilledUsage.Views.Select(v => $"{N(s.BilledRecords(v.Name, previous))}, {s.Lost(v.Name, previous)}, {s.DoubleCounted(v.Name, previous)}")) +
                $" | {(differences == 0 ? "equal" : $"**{differences} differences**")} | {s.DeadLettered} |");
            previous = s;
        }
        md.AppendLine();

        if (final is not null)
        {
            var names = r.World.Deployments.ToDictionary(d => d.Id, d => d.Customer.Customer.Name);
            md.AppendLine("## Token sums at the end, per deployment");
            md.AppendLine();
            md.AppendLine("Published = the records the serving nodes handed to their MeteringPublisher (weighted as the platform weighs them). A view shows '·' for a measure it does not report.");
            md.AppendLine();
            md.AppendLine("| deployment | measure | published | " + string.Join(" | ", BilledUsage.Views.Select(v => v.Name)) + " |");
            md.AppendLine("|---|---|---:|" + string.Concat(BilledUsage.Views.Select(_ => "---:|")));
            foreach (var (id, published) in final.Published)
            {
                foreach (var (measure, value) in published.Values)
                {
                    md.AppendLine($"| {names[id]} | {measure} | {N(value)} | " + string.Join(" | ", BilledUsage.Views.Select(v =>
                        v.Of(final.Billed[id]).Values.TryGetValue(measure, out var billed) ? (billed == value ? N(billed) : $"**{N(billed)}**") : "·")) + " |");
                }
            }
            md.AppendLine();

            md.AppendLine("## Invoice drafts");
            md.AppendLine();
            md.AppendLine($"Spillover is billed per 1M tokens (input = prompt − cached {r.World.Prices.Input}, cached {r.World.Prices.Cached}, output {r.World.Prices.Output} {DrillWorld.Currency}); expected = the published spilled tokens at those prices, each line rounded to the cent; the draft total = its provisioned lines (PTU-hours so far) + the spillover lines.");
            md.AppendLine();
            md.AppendLine("| customer | spilled tokens input / cached / output (published) | billed | spillover expected | billed | draft total expected | billed |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
            foreach (var invoice in final.Invoices())
            {
                var p = final.Published[invoice.Deployment];
                var bill = final.Billed[invoice.Deployment].Bill;
                var billedTokens = string.Join(" / ", Settlement.TokenTypes.Select(t => N(bill.Spillover.GetValueOrDefault(t).Tokens)));
                md.AppendLine($"| {names[invoice.Deployment]} | {N(p[Measure.SpilledPrompt] - p[Measure.SpilledCached])} / {N(p[Measure.SpilledCached])} / {N(p[Measure.SpilledOutput])} | {billedTokens} | " +
                    $"{invoice.ExpectedSpillover:0.00} | {invoice.BilledSpillover:0.00} | {invoice.ExpectedTotal:0.00} | {invoice.BilledTotal:0.00} |");
            }
            md.AppendLine();

            var differences = r.Settlements.SelectMany(s => s.Differences().Concat(s.Invoices().SelectMany(i => i.Differences)).Select(d => (s.Round, d))).ToList();
            if (differences.Count > 0)
            {
                md.AppendLine("## Differences");
                md.AppendLine();
                md.AppendLine("| round | deployment | view | measure | published | billed |");
                md.AppendLine("|---:|---|---|---|---:|---:|");
                foreach (var (round, d) in differences) md.AppendLine($"| {round} | {names[d.Deployment]} | {d.View} | {d.Measure} | {N(d.Published)} | {N(d.Billed)} |");
                md.AppendLine();
            }
        }

        md.AppendLine("## The serving SDK");
        md.AppendLine();
        md.AppendLine("| node | records handed over | confirmed | batches | republishes | publisher reconnects | publish failures | feed pulls | feed reconnects | pushes applied | lease renewals | feed failures |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var n in r.Nodes)
        {
            md.AppendLine($"| {n.ProducerId} | {N(n.HandedOver)} | {N(n.Confirmed)} | {N(n.Batches)} | {N(n.Republishes)} | {n.Reconnects} | {N(n.PublishFailures)} | {N(n.Pulls)} | {n.FeedReconnects} | {N(n.PushesApplied)} | {N(n.LeaseRenewals)} | {N(n.FeedFailures)} |");
        }
        md.AppendLine();
        md.AppendLine("Failures are the SDK's own reports (a publish or pull that failed and was retried), not lost records.");
        md.AppendLine();

        md.AppendLine("## Checks");
        md.AppendLine();
        foreach (var c in checks) md.AppendLine($"- {(c.Passed switch { true => "passed", false => "**FAILED**", null => "skipped" })}: {c.Name} — {c.Detail}");
        return md.ToString();
    }

    static string N(long value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static string N(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static string N(decimal value) => value == decimal.Truncate(value) ? value.ToString("#,0", CultureInfo.InvariantCulture) : value.ToString("#,0.####", CultureInfo.InvariantCulture);
}
