using Marten;

namespace Throughput.Alerts;

/// <summary>
/// The last event sequence <see cref="AlertWatch"/> folded, written in the same batch as the folds. The read models'
/// composite replays the log from its start whenever its version changes, and a month's usage folded twice would cross
/// spend alerts and caps early: the watch skips what it has folded, whatever the composite's own position.
/// </summary>
public sealed record AlertWatchProgress(string Id, long Sequence)
{
    const string Key = "alert-watch";

    /// <summary>The position the watch reached as a subscription of its own, before it joined the read models' pass.</summary>
    const string SubscriptionShard = "alert-watch:All";

    public static async Task<AlertWatchProgress> LoadAsync(IDocumentOperations operations, CancellationToken ct)
    {
        if (await operations.LoadAsync<AlertWatchProgress>(Key, ct) is { } progress) return progress;
        var schema = operations.DocumentStore.Options.Events.DatabaseSchemaName;
        var reached = await operations.QueryAsync<long>($"select last_seq_id from {schema}.mt_event_progression where name = ?", ct, SubscriptionShard);
        return new AlertWatchProgress(Key, reached.Count > 0 ? reached[0] : 0);
    }
}
