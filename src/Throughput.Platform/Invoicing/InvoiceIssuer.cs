using Marten;

namespace Throughput.Invoicing;

/// <summary>
/// Issues every invoice whose month is over and whose grace period has passed, oldest month first. Safe on any number
/// of hosts at once: issuing is idempotent per tenant and month, and numbering is serialised by the register.
/// </summary>
public sealed class InvoiceIssuer(IDocumentStore store, InvoiceIssuing issuing, InvoicingSettings settings, TimeProvider clock, ILogger<InvoiceIssuer> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!settings.AutoIssue) return;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await IssueDueAsync(stoppingToken);
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

    public async Task<int> IssueDueAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var due = LastDue(now, settings.GracePeriod);
        IReadOnlyList<BillingAccount> accounts;
        await using (var session = store.QuerySession())
            accounts = await session.Query<BillingAccount>().Where(a => a.UnissuedSince <= due.Index).ToListAsync(ct);
        var issued = 0;
        foreach (var account in accounts)
        {
            foreach (var month in account.OpenMonthsThrough(due))
            {
                var (_, created) = await issuing.IssueAsync(account.Id, month, now, Issue.Automatic, ct);
                if (created) issued++;
            }
        }
        return issued;
    }
}
