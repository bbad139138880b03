using System.Diagnostics;
using Npgsql;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>
/// Polls the tenant's billing account (the invoice drafts' source) for the last event sequence the projection folded
/// into it; an event is in the draft from the first poll that shows that sequence or a later one.
/// </summary>
public sealed class DraftObserver(string connectionString, string schema, string tenantId, TimeSpan interval) : IAsyncDisposable
{
    readonly NpgsqlDataSource _database = NpgsqlDataSource.Create(connectionString);
    readonly List<(DateTimeOffset At, long Through)> _marks = [];
    readonly CancellationTokenSource _stop = new();
    Task? _polling;

    /// <summary>The platform's read models are version 3 of their composite projection (<c>EventStore.ReadModelsVersion</c>), which Marten appends to their tables' names.</summary>
    const string Accounts = "mt_doc_billingaccount_3";

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
                await using var command = _database.CreateCommand($"select coalesce((data->>'projectedThrough')::bigint, 0) from {schema}.{Accounts} where id = @tenant");
                command.Parameters.AddWithValue("tenant", tenantId);
                long through;
                try
                {
                    through = await command.ExecuteScalarAsync(_stop.Token) is long value ? value : 0;
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
                {
                    continue; // the daemon has not written its first account yet
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
