using Throughput.Benchmarks.Harness;

namespace Throughput.Benchmarks.Drills.Faults;

public enum FaultKind
{
    /// <summary>SIGKILL of the platform host process, started again after the down time.</summary>
    HostKill,

    /// <summary>The RabbitMQ node SIGKILLed in odd rounds, stopped cleanly in even ones; started again after the down time.</summary>
    RabbitRestart,

    /// <summary>PostgreSQL's fast shutdown and a start at once.</summary>
    PostgresRestart,

    /// <summary>PostgreSQL's immediate shutdown (no checkpoint: a crash), started again after the down time (the long one in even rounds).</summary>
    PostgresCrash,

    /// <summary>One serving node's broker connections (metering and admission) closed from the broker's side.</summary>
    NodeCut,
}

/// <summary>
/// One fault as it happened: what, when, how long until what was faulted was back (<paramref name="Repaired"/>: started
/// again, or the connections closed) and until the platform was whole again (<paramref name="Outage"/>), and what the
/// serving nodes did meanwhile.
/// </summary>
public sealed record FaultOutcome(int Round, FaultKind Kind, string What, DateTimeOffset At, TimeSpan Repaired, TimeSpan Outage, IReadOnlyList<OutageWindow> Windows, string? Failure)
{
    /// <summary>Weighted tokens the GPUs served while the fault lasted, over every node.</summary>
    public double Served => Windows.Sum(w => w.ServedWeighted);

    /// <summary>Weighted tokens served per deployment while the fault lasted, over every node.</summary>
    public IReadOnlyDictionary<string, double> ServedBy =>
        Windows.SelectMany(w => w.ServedBy).GroupBy(p => p.Key).ToDictionary(g => g.Key, g => g.Sum(p => p.Value));

    /// <summary>The deployment whose bucket came closest to its allowance (drawn ÷ allowed; completions may give back more than was drawn), over every node.</summary>
    public double TightestShare => Windows.SelectMany(w => w.WithinRate()).Select(r => r.Allowed <= 0 ? 0 : Math.Max(0, r.Drawn / r.Allowed)).DefaultIfEmpty(0).Max();

    public bool WithinLimits => Windows.SelectMany(w => w.WithinRate()).All(r => r.Drawn <= r.Allowed);

    public bool Passed => Failure is null && Served > 0 && WithinLimits;
}

/// <summary>Inflicts the drill's faults on its scratch services, its platform host and its serving nodes, and repairs them as an operator (or a supervisor) would.</summary>
/// <param name="down">How long a killed host, broker or database stays down.</param>
/// <param name="longDown">How long PostgreSQL stays down after its crash in even rounds: longer than the metering consumer's
/// bounded retries, as a failover or a slow crash recovery would be.</param>
public sealed class FaultInjector(ScratchServices services, PlatformHost host, IReadOnlyList<BatcherNode> nodes, TimeSpan down, TimeSpan longDown, Action<string> log)
{
    static readonly TimeSpan RecoveryTimeout = TimeSpan.FromSeconds(120);

    public async Task<FaultOutcome> InflictAsync(int round, FaultKind kind, CancellationToken ct)
    {
        var cut = nodes[(round - 1) % nodes.Count];
        var watched = kind == FaultKind.NodeCut ? [cut] : nodes;
        var what = Describe(kind, round, cut);
        log($"round {round}: {what}");
        var at = DateTimeOffset.UtcNow;
        foreach (var node in watched) node.OpenWindow();
        string? failure = null;
        var repaired = at;
        try
        {
            await InflictAndRepairAsync(kind, round, cut, () => repaired = DateTimeOffset.UtcNow, ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            failure = e.Message;
        }
        var windows = watched.Select(n => n.CloseWindow()).ToList();
        var outcome = new FaultOutcome(round, kind, what, at, repaired - at, DateTimeOffset.UtcNow - at, windows, failure);
        log(failure is null
            ? $"round {round}: back after {outcome.Repaired.TotalSeconds:0.0} s, whole again after {outcome.Outage.TotalSeconds:0.0} s; served {outcome.Served:N0} weighted tokens meanwhile"
            : $"round {round}: NOT recovered: {failure}");
        return outcome;
    }

    async Task InflictAndRepairAsync(FaultKind kind, int round, BatcherNode cut, Action repaired, CancellationToken ct)
    {
        switch (kind)
        {
            case FaultKind.HostKill:
                await host.KillAsync();
                await Task.Delay(down, ct);
                await host.RestartAsync(ct);
                repaired();
                return;
            case FaultKind.RabbitRestart:
                if (round % 2 == 1) await services.RabbitKillAsync(ct);
                else await services.RabbitStopAsync(ct);
                await Task.Delay(down, ct);
                await services.RabbitStartAsync(ct);
                break;
            case FaultKind.PostgresRestart:
                await services.PostgresRestartAsync(ct);
                break;
            case FaultKind.PostgresCrash:
                await services.PostgresCrashAsync(ct);
                await Task.Delay(CrashDown(round), ct);
                await services.PostgresStartAsync(ct);
                break;
            case FaultKind.NodeCut:
                var (publisher, feed) = (cut.Publisher.Reconnects, cut.Feed.Reconnects);
                var closed = await services.CloseConnectionsAsync(cut.ConnectionNames, "fault drill: connection cut", ct);
                repaired();
                if (closed != cut.ConnectionNames.Count) throw new InvalidOperationException($"closed {closed} of the node's {cut.ConnectionNames.Count} connections");
                await WaitAsync(() => cut.Publisher.Reconnects > publisher && cut.Feed.Reconnects > feed, "the node to reconnect", ct);
                return;
        }
        repaired();
        await host.WaitUntilReadyAsync(RecoveryTimeout, ct);
    }

    string Describe(FaultKind kind, int round, BatcherNode cut) => kind switch
    {
        FaultKind.HostKill => $"platform host SIGKILLed, started again after {down.TotalSeconds:0.#} s",
        FaultKind.RabbitRestart => round % 2 == 1
            ? $"RabbitMQ node '{services.Name}' SIGKILLed, started again after {down.TotalSeconds:0.#} s"
            : $"RabbitMQ node '{services.Name}' stopped cleanly, started again after {down.TotalSeconds:0.#} s",
        FaultKind.PostgresRestart => $"PostgreSQL '{services.Name}' restarted (fast shutdown, start)",
        FaultKind.PostgresCrash => $"PostgreSQL '{services.Name}' crashed (immediate shutdown), started again after {CrashDown(round).TotalSeconds:0.#} s",
        _ => $"serving node {cut.ProducerId}: its metering and admission connections closed by the broker",
    };

    TimeSpan CrashDown(int round) => round % 2 == 0 ? longDown : down;

    static async Task WaitAsync(Func<bool> done, string what, CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + RecoveryTimeout;
        while (!done())
        {
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"waited {RecoveryTimeout.TotalSeconds:0} s for {what}");
            await Task.Delay(50, ct);
        }
    }
}
