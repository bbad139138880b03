using System.Collections.Concurrent;
using Marten;
using Marten.Linq.LastModified;
using Throughput.Deployments;
using Throughput.Tenants;

namespace Throughput.Admission;

/// <summary>
/// Every host keeps the deployments and tenants in memory for the admission query API, so a query costs no database
/// round trip. It re-reads what changed every <see cref="Tick"/>; answers are at most that much behind the event store.
/// </summary>
public sealed class AdmissionTable(IDocumentStore store, TimeProvider clock, ILogger<AdmissionTable> log) : BackgroundService
{
    static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(200);

    // Rows are stamped with their transaction's start time, so a long transaction can commit "in the past": re-read a margin.
    static readonly TimeSpan Overlap = TimeSpan.FromSeconds(5);

    readonly ConcurrentDictionary<string, Deployment> _deployments = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, Tenant> _tenants = new(StringComparer.Ordinal);
    readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly SemaphoreSlim _refreshing = new(1, 1);
    DateTimeOffset _since = DateTimeOffset.MinValue;

    public IEnumerable<Deployment> Deployments => _deployments.Values;

    public Tenant? TenantOf(Deployment d) => _tenants.GetValueOrDefault(d.TenantId);

    public async ValueTask<Deployment?> FindAsync(string deploymentId, CancellationToken ct)
    {
        if (_deployments.TryGetValue(deploymentId, out var d)) return d;
        await _loaded.Task.WaitAsync(ct);
        if (_deployments.TryGetValue(deploymentId, out d)) return d;
        // Created since the last tick: read through once.
        await using var session = store.QuerySession();
        d = await session.LoadAsync<Deployment>(deploymentId, ct);
        if (d is null) return null;
        if (await session.LoadAsync<Tenant>(d.TenantId, ct) is { } t) _tenants.AddOrUpdate(t.Id, t, (_, old) => old.Version >= t.Version ? old : t);
        return _deployments.AddOrUpdate(d.Id, d, (_, old) => old.Version >= d.Version ? old : d);
    }

    /// <summary>
    /// Reads what changed since the last tick now: a node's full pull (at start or after a gap) must hold every deployment
    /// committed before it asked, or one created in the last tick stays unknown to it until its next periodic pull.
    /// </summary>
    public async Task CatchUpAsync(CancellationToken ct)
    {
        await _loaded.Task.WaitAsync(ct);
        await RefreshAsync(ct);
    }

    public override void Dispose()
    {
        base.Dispose();
        _refreshing.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Tick, clock);
        do
        {
            try
            {
                await RefreshAsync(stoppingToken);
                _loaded.TrySetResult();
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "Refreshing the admission table failed; answering from the last state");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    async Task RefreshAsync(CancellationToken ct)
    {
        await _refreshing.WaitAsync(ct);
        try
        {
            var started = clock.GetUtcNow();
            var since = _since == DateTimeOffset.MinValue ? _since : _since - Overlap;
            await using var session = store.QuerySession();
            foreach (var t in await session.Query<Tenant>().Where(x => x.ModifiedSince(since)).ToListAsync(ct))
                _tenants.AddOrUpdate(t.Id, t, (_, old) => old.Version >= t.Version ? old : t);
            foreach (var d in await session.Query<Deployment>().Where(x => x.ModifiedSince(since)).ToListAsync(ct))
                _deployments.AddOrUpdate(d.Id, d, (_, old) => old.Version >= d.Version ? old : d);
            _since = started;
        }
        finally
        {
            _refreshing.Release();
        }
    }
}
