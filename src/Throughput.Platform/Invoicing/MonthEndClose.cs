using System.Diagnostics;
using Marten;
using Throughput.Access;
using Throughput.Http;

namespace Throughput.Invoicing;

/// <summary>
/// A month's close as it goes, one document per month, rewritten in each batch's transaction: the accounts the last run
/// found open, how many it has issued and skipped (nothing to bill, or issued before) so far, and when it ended. A run
/// after a crash starts over from what is still open, so <see cref="Total"/> counts what that run had left.
/// </summary>
/// <param name="Id">The month closed, yyyy-MM.</param>
/// <param name="Total">The open accounts the last run found.</param>
/// <param name="Issued">Invoices that run issued so far.</param>
/// <param name="Skipped">Accounts it skipped: nothing to bill, or issued before.</param>
/// <param name="StartedAt">When the last run started.</param>
/// <param name="UpdatedAt">When it last recorded progress.</param>
/// <param name="FinishedAt">When it finished; null while it runs (or if it stopped).</param>
/// <param name="IssuedBy">Who started it: a key id, or automatic.</param>
public sealed record MonthClose(string Id, int Total, int Issued, int Skipped, DateTimeOffset StartedAt, DateTimeOffset UpdatedAt, DateTimeOffset? FinishedAt, string IssuedBy)
{
    /// <summary>Invoices issued per second so far in the last run.</summary>
    public double InvoicesPerSecond => UpdatedAt > StartedAt ? Issued / (UpdatedAt - StartedAt).TotalSeconds : 0;

    /// <summary>When it finished, or is expected to at the rate so far; null before a rate is known.</summary>
    public DateTimeOffset? EstimatedEnd =>
        FinishedAt ?? (InvoicesPerSecond > 0 ? UpdatedAt + TimeSpan.FromSeconds((Total - Issued - Skipped) / InvoicesPerSecond) : null);
}

/// <summary>
/// Closes a month for every tenant at once: waits once for the drafts to hold everything committed before it began,
/// then issues in batches of <c>Invoicing:CloseBatch</c> accounts, each batch one transaction that holds the register's row
/// lock, numbers its invoices as one range after the register's last and starts their streams. A kill mid-close rolls
/// back the batch under way and nothing else: numbers stay gapless, and the next run skips what was issued.
/// </summary>
public sealed class MonthEndClose(IDocumentStore store, InvoicingSettings settings, TimeProvider clock, IHostApplicationLifetime lifetime, ILogger<MonthEndClose> log)
{
    static readonly TimeSpan LogEvery = TimeSpan.FromSeconds(5);

    readonly Lock _gate = new();
    readonly Dictionary<BillingMonth, Task> _running = [];

    /// <summary>Starts closing the month in the background unless this host is closing it already.</summary>
    public void Start(BillingMonth month, string issuedBy)
    {
        lock (_gate)
        {
            if (_running.TryGetValue(month, out var running) && !running.IsCompleted) return;
            _running[month] = Task.Run(async () =>
            {
                try
                {
                    await CloseAsync(month, issuedBy, waitForDrafts: true, lifetime.ApplicationStopping);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    log.LogError(e, "Closing {Month} failed; start it again to finish", month);
                }
            });
        }
    }

    /// <summary>Issues every invoice of the month still open; returns how many it issued.</summary>
    public async Task<int> CloseAsync(BillingMonth month, string issuedBy, bool waitForDrafts, CancellationToken ct)
    {
        var started = clock.GetUtcNow();
        if (started < month.End) throw RuleViolation.Conflict($"{month} is not over; it can be closed from {month.End:yyyy-MM-dd HH:mm:ss} UTC.");
        if (waitForDrafts && !await Drafts.WaitUntilCurrentAsync(store, settings.CatchUpTimeout, ct))
            log.LogWarning("Invoice drafts lag behind the event log; closing {Month} from the drafts as they are (late usage moves to the next invoice)", month);
        await InvoiceRegisters.EnsureOpenAsync(store, started, ct);

        int total;
        await using (var query = store.QuerySession())
            total = await query.Query<BillingAccount>().CountAsync(a => a.UnissuedSince <= month.Index, ct);
        var progress = new MonthClose(month.ToString(), total, 0, 0, started, started, null, issuedBy);
        var timer = Stopwatch.StartNew();
        var logged = TimeSpan.Zero;
        var after = "";
        while (true)
        {
            IReadOnlyList<BillingAccount> page;
            await using (var query = store.QuerySession())
                page = await query.Query<BillingAccount>()
                    .Where(a => a.UnissuedSince <= month.Index && string.Compare(a.Id, after) > 0)
                    .OrderBy(a => a.Id).Take(settings.CloseBatch).ToListAsync(ct);
            if (page.Count == 0) break;
            after = page[^1].Id;
            var open = page.Where(a => !a.IsIssued(month) && a.MayBill(month)).ToList();
            progress = await IssueBatchAsync(open, month, progress with { Skipped = progress.Skipped + page.Count - open.Count }, ct);
            if (timer.Elapsed - logged >= LogEvery)
            {
                logged = timer.Elapsed;
                log.LogInformation("Closing {Month}: {Issued} of {Total} issued, {Rate:0} invoices/s, estimated end {End:O}",
                    month, progress.Issued, progress.Total, progress.InvoicesPerSecond, progress.EstimatedEnd);
            }
        }

        progress = progress with { FinishedAt = clock.GetUtcNow() };
        await using (var session = store.LightweightSession())
        {
            session.Store(progress);
            await session.SaveChangesAsync(ct);
        }
        log.LogInformation("Closed {Month}: {Issued} invoices issued in {Elapsed:0.0} s ({Rate:0}/s); {Skipped} accounts had nothing to bill or were issued before",
            month, progress.Issued, timer.Elapsed.TotalSeconds, progress.Issued / Math.Max(timer.Elapsed.TotalSeconds, 0.001), progress.Skipped);
        return progress.Issued;
    }

    async Task<MonthClose> IssueBatchAsync(List<BillingAccount> accounts, BillingMonth month, MonthClose progress, CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        var register = await session.Events.FetchForExclusiveWriting<InvoiceRegister>(InvoiceRegister.StreamId, ct);
        // Read under the register's lock: an invoice another run or a manual issue committed is seen here, not issued twice.
        var ids = accounts.Select(a => Invoice.IdFor(a.Id, month)).ToArray();
        var issuedBefore = ids.Length == 0 ? [] : (await session.LoadManyAsync<Invoice>(ct, ids)).Select(i => i.TenantId).ToHashSet(StringComparer.Ordinal);
        var now = clock.GetUtcNow();
        var decided = Issue.DecideMany(register.Aggregate!, accounts.Where(a => !issuedBefore.Contains(a.Id)), month, now, progress.IssuedBy);
        register.AppendMany(decided.Select(d => (object)d.Numbered).ToArray());
        foreach (var invoice in decided) session.Events.StartStream<Invoice>(invoice.Issued.InvoiceId, invoice.Issued);
        progress = progress with
        {
            Issued = progress.Issued + decided.Count,
            Skipped = progress.Skipped + accounts.Count - decided.Count,
            UpdatedAt = now,
        };
        session.Store(progress);
        await session.SaveChangesAsync(ct);
        return progress;
    }
}
