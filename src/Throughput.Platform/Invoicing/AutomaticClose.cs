using Marten;

namespace Throughput.Invoicing;

/// <summary>
/// Closes every month that is over and whose grace period has passed, oldest first. Safe on any number of hosts at
/// once: issuing is idempotent per tenant and month, and numbering is serialised by the register.
/// </summary>
public sealed class AutomaticClose(IDocumentStore store, MonthEndClose close, InvoicingSettings settings, TimeProvider clock, ILogger<AutomaticClose> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!settings.AutoIssue) return;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await CloseDueAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogError(e, "Issuing due invoices failed; retrying in {Every}", settings.IssueEvery);
            }
            await Task.Delay(settings.IssueEvery, clock, stoppingToken);
        }
    }

    /// <summary>The last month whose invoice is due at <paramref name="now"/>: over, and its grace period passed.</summary>
    public static BillingMonth LastDue(DateTimeOffset now, TimeSpan grace)
    {
        var month = BillingMonth.FromIndex(BillingMonth.Of(now).Index - 1);
        while (month.End + grace > now) month = BillingMonth.FromIndex(month.Index - 1);
        return month;
    }

    /// <summary>Closes every month that is due and still has open accounts, oldest first; returns the invoices issued.</summary>
    public async Task<int> CloseDueAsync(CancellationToken ct)
    {
        var due = LastDue(clock.GetUtcNow(), settings.GracePeriod);
        BillingAccount? oldest;
        await using (var session = store.QuerySession())
            oldest = await session.Query<BillingAccount>().Where(a => a.UnissuedSince <= due.Index).OrderBy(a => a.UnissuedSince).FirstOrDefaultAsync(ct);
        if (oldest?.UnissuedSince is not { } first) return 0;
        var issued = 0;
        for (var index = first; index <= due.Index; index++)
            issued += await close.CloseAsync(BillingMonth.FromIndex(index), Issue.Automatic, waitForDrafts: index == first, ct);
        return issued;
    }
}
