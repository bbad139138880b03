using Marten;
using Throughput.Deployments;

namespace Throughput.Metering;

/// <summary>
/// Releases throttled deployments whose bucket has drained while no usage arrived (usage itself releases busy ones).
/// Writes their meters over the versions it read, so a concurrent metering batch simply wins and this retries next tick.
/// </summary>
public sealed class ThrottleLifter(IDocumentStore store, TimeProvider clock, ILogger<ThrottleLifter> log) : BackgroundService
{
    static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(500);

    readonly SemaphoreSlim _lifting = new(1, 1);

    /// <summary>
    /// Holds the lifter off until disposed, once a lift under way has finished: a projection rebuild in the host rewrites
    /// deployments' snapshots page by page, and a lift decided on a half-rebuilt one would be written back over it.
    /// (A hosted service's own StopAsync would not do: the host takes its ended loop for a fault and stops.)
    /// </summary>
    public async Task<IDisposable> HoldAsync()
    {
        await _lifting.WaitAsync();
        return new Held(_lifting);
    }

    sealed class Held(SemaphoreSlim lifting) : IDisposable
    {
        public void Dispose() => lifting.Release();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Tick, clock);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            await _lifting.WaitAsync(stoppingToken);
            try
            {
                await LiftDrainedAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "Lifting drained throttles failed; retrying next tick");
            }
            finally
            {
                _lifting.Release();
            }
        }
    }

    async Task LiftDrainedAsync(CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        var throttled = await session.Query<Deployment>().Where(d => d.Throttled).Select(d => d.Id).Take(1000).ToListAsync(ct);
        if (throttled.Count == 0) return;
        await session.BeginTransactionAsync(ct);
        var meters = await DeploymentMeters.LoadAsync(session, throttled, ct);
        var now = clock.GetUtcNow();
        List<string> lifted = [];
        List<(DeploymentMeter, long)> moved = [];
        foreach (var snapshot in await session.LoadManyAsync<Deployment>(ct, throttled))
        {
            var meter = meters.GetValueOrDefault(snapshot.Id);
            var deployment = meter?.On(snapshot) ?? snapshot;
            if (Meter.LiftIfDrained(deployment, now) is not { } lift) continue;
            var stream = await session.Events.FetchForWriting<Deployment>(snapshot.Id, ct);
            if (stream.Aggregate?.AdmissionRevision != snapshot.AdmissionRevision) continue; // changed since the read: next tick
            stream.AppendOne(lift);
            moved.Add((DeploymentMeter.Of(deployment.Then(lift), 0), meter?.Version ?? 0));
            lifted.Add(snapshot.Id);
        }
        if (lifted.Count == 0) return;
        try
        {
            await DeploymentMeters.SaveAsync(session, moved, ct);
            await session.SaveChangesAsync(ct);
        }
        catch (JasperFx.ConcurrencyException)
        {
            // A metering batch moved one of these meters meanwhile; it decided with fresher state, and this rolls back.
            return;
        }
    }
}
