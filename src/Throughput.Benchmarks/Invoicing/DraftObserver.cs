using System.Diagnostics;
using Npgsql;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>
/// Polls a composite projection's progression, which commits with its members' documents (the read models': every draft's
/// usage and billing account); an event is in them from the first poll that shows that sequence or a later one.
/// </summary>
public sealed class DraftObserver(string connectionString, string query, TimeSpan interval) : IAsyncDisposable
{
    /// <summary>
    /// Every tenant's draft at once: how far the read models' daemon shard of the current version has folded the log (a
    /// schema that ran an earlier version keeps that version's row, frozen).
    /// </summary>
    public static DraftObserver ForEveryTenant(string connectionString, string schema, TimeSpan interval) => ForComposite(connectionString, schema, Throughput.Configuration.ReadModels.Name, interval);

    /// <summary>The usage series (minutes, hours, pool utilization), which the daemon folds in a composite of their own.</summary>
    public static DraftObserver ForUsageSeries(string connectionString, string schema, TimeSpan interval) => ForComposite(connectionString, schema, Throughput.Configuration.ReadModels.SeriesName, interval);

    static DraftObserver ForComposite(string connectionString, string schema, string composite, TimeSpan interval) =>
        new(connectionString, $"select coalesce(max(last_seq_id), 0) from {schema}.mt_event_progression where name = '{composite}:V{Throughput.Configuration.ReadModels.Version}:All'", interval);

    readonly NpgsqlDataSource _database = NpgsqlDataSource.Create(connectionString);
    readonly List<(DateTimeOffset At, long Through)> _marks = [];
    readonly CancellationTokenSource _stop = new();
    Task? _polling;

    public long Through { get; private set; }

    public void Start() => _polling = Task.Run(PollLoopAsync);

    /// <summary>When the draft first showed the event with this sequence; null if it never did while polling.</summary>
    public DateTimeOffset? FirstShowing(long sequence)
    {
        lock (_marks)
        {
            var index = _marks.FindIndex(m => m.Through >= sequence);
            return index < 0 ? null : _marks[index].At;
        }
    }

    public async Task<bool> WaitForAsync(long sequence, TimeSpan timeout, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        while (Through < sequence)
        {
            if (Stopwatch.GetElapsedTime(started) > timeout) return false;
            await Task.Delay(20, ct);
        }
        return true;
    }

    async Task PollLoopAsync()
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                await using var command = _database.CreateCommand(query);
                long through;
                try
                {
                    through = await command.ExecuteScalarAsync(_stop.Token) is long value ? value : 0;
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
                {
                    continue; // the daemon has not created its progression yet
                }
                var at = DateTimeOffset.UtcNow; // the row as read was committed before this
                if (through <= Through) continue;
                Through = through;
                lock (_marks) _marks.Add((at, through));
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_polling is not null) await _polling.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
        await _database.DisposeAsync();
    }
}
