using Marten;
using Throughput.Invoicing;

namespace Throughput.Alerts;

/// <summary>
/// Evaluates invoice-to-date alerts against the month's draft, on a timer rather than with usage as <see cref="AlertWatch"/>
/// does: a draft grows mostly with time (PTU-hours), and usage may never come. Each round reads the alerts and their
/// tenants' <see cref="BillingAccount"/>s (the projection the drafts come from) and appends what crossed to the alerts'
/// streams at the version it read: one write, from which the webhook feed sends. On several daemon hosts at once a
/// round that loses the race fails on the version and the next one decides afresh (nothing, once the alert is crossed).
/// </summary>
public sealed class InvoiceWatch(IDocumentStore store, TimeProvider clock, InvoiceWatchSettings settings, ILogger<InvoiceWatch> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await EvaluateAsync(stoppingToken);
            }
            catch (JasperFx.ConcurrencyException e)
            {
                log.LogInformation(e, "An invoice alert changed while it was evaluated; it is evaluated again in {Every}", settings.Every);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogError(e, "Evaluating invoice alerts failed; retrying in {Every}", settings.Every);
            }
            await Task.Delay(settings.Every, clock, stoppingToken);
        }
    }

    /// <summary>Compares every invoice-to-date alert with its draft as of now; returns the events appended.</summary>
    public async Task<int> EvaluateAsync(CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        var alerts = await session.Query<Alert>().Where(a => a.Metric == AlertMetric.InvoiceToDate && !a.Removed).ToListAsync(ct);
        if (alerts.Count == 0) return 0;
        var accounts = (await session.LoadManyAsync<BillingAccount>(ct, alerts.Select(a => a.TenantId).Distinct())).ToDictionary(a => a.Id);
        var now = clock.GetUtcNow();
        var month = BillingMonth.Of(now);
        var appended = 0;
        foreach (var tenant in alerts.GroupBy(a => a.TenantId))
        {
            if (!accounts.TryGetValue(tenant.Key, out var account)) continue; // not projected yet: nothing billed
            var draft = InvoiceCalculation.Compute(account, month, now);
            foreach (var alert in tenant)
            {
                var events = Alert.Decide(alert, Value(draft, alert.DeploymentId), month.ToString(), account.Currency, now);
                if (events.Length == 0) continue;
                session.Events.Append(alert.Id, alert.Version + events.Length, events);
                appended += events.Length;
            }
        }
        if (appended > 0) await session.SaveChangesAsync(ct);
        return appended;
    }

    /// <summary>The draft's total, or the total of one deployment's lines (reservations are the tenant's, on no deployment).</summary>
    public static decimal Value(InvoiceFigures draft, string? deploymentId) =>
        deploymentId is null ? draft.Total : draft.Lines.Where(l => l.DeploymentId == deploymentId).Sum(l => l.Amount);
}

/// <summary><c>Alerts:InvoiceEvery</c> (default 1 minute): how often invoice-to-date alerts are compared with the drafts.</summary>
public sealed record InvoiceWatchSettings(TimeSpan Every)
{
    public static InvoiceWatchSettings FromConfiguration(IConfiguration configuration) =>
        new(configuration["Alerts:InvoiceEvery"] is { Length: > 0 } every ? TimeSpan.Parse(every, System.Globalization.CultureInfo.InvariantCulture) : TimeSpan.FromMinutes(1));
}
