using System.Diagnostics;
using Npgsql;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>
/// Polls a tenant's billing account (the invoice drafts' source) for the last event sequence the projection folded
/// into it, or the read models' progression for every tenant's; an event is in the draft from the first poll that
/// shows that sequence or a later one.
/// </summary>
public sealed class DraftObserver(string connectionString, string query, string? tenantId, TimeSpan interval) : IAsyncDisposable
{
    public static DraftObserver ForTenant(string connectionString, string schema, string tenantId, TimeSpan interval) =>
        new(connectionString, $"select coalesce((data->>'projectedThrough')::bigint, 0) from {schema}.{Accounts} where id = @tenant", tenantId, interval);

    /// <summary>Every tenant's draft at once: how far the read models' daemon shard has folded the log.</summary>
    public static DraftObserver ForEveryTenant(string connectionString, string schema, TimeSpan interval) =>
        new(connectionString, $"select coalesce(max(last_seq_id), 0) from {schema}.mt_event_progression where name like 'ReadModels:%'", null, interval);

    readonly NpgsqlDataSource _database = NpgsqlDataSource.Create(connectionString);
    readonly List<(DateTimeOffset At, long Through)> _marks = [];
    readonly CancellationTokenSource _stop = new();
    Task? _polling;

    /// <summary>Marten appends the version of the read models' composite projection to their tables' names.</summary>
    static readonly string Accounts = $"mt_doc_billingaccount_{Throughput.Configuration.ReadModels.Version}";

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
                if (tenantId is not null) command.Parameters.AddWithValue("tenant", tenantId);
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
