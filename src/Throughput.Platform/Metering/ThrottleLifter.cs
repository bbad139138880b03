using Marten;
using Throughput.Admission;
using Throughput.Deployments;

namespace Throughput.Metering;

/// <summary>
/// Releases throttled deployments whose bucket has drained while no usage arrived (usage itself releases busy ones).
/// Appends with the stream's version, so a concurrent metering write simply wins and this retries next tick.
/// </summary>
public sealed class ThrottleLifter(IDocumentStore store, TimeProvider clock, AdmissionPush push, ILogger<ThrottleLifter> log) : BackgroundService
{
    static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(500);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Tick, clock);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await LiftDrainedAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "Lifting drained throttles failed; retrying next tick");
            }
        }
    }

    async Task LiftDrainedAsync(CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        var throttled = await session.Query<Deployment>().Where(d => d.Throttled).Select(d => d.Id).Take(1000).ToListAsync(ct);
        List<string> lifted = [];
        foreach (var id in throttled)
        {
            var stream = await session.Events.FetchForWriting<Deployment>(id, ct);
            if (stream.Aggregate is not { } d) continue;
            var events = Meter.LiftIfDrained(d, clock.GetUtcNow());
            stream.AppendMany(events);
            if (events.Length > 0) lifted.Add(id);
        }
        if (lifted.Count == 0) return;
        try
        {
            await session.SaveChangesAsync(ct);
        }
        catch (JasperFx.ConcurrencyException)
        {
            // A metering batch touched one of these deployments meanwhile; it decided with fresher state.
            return;
        }
        await push.TryPublishCurrentAsync(session, lifted, ct);
    }
}
