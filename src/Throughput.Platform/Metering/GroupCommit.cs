namespace Throughput.Metering;

/// <summary>
/// A partition's consumer batches folded together while the partition is behind. MassTransit closes a batch on its time
/// limit whether or not the previous one is still folding, so under load a partition's batches are a few milliseconds of
/// messages each, queued one behind another, and every one is a transaction that writes each deployment it holds once:
/// at 10,000 deployments nearly one usage entry per record. Here a batch that arrives while the partition folds waits,
/// and everything that waited is folded next as one group, in one transaction: the group grows with the backlog, and a
/// partition that keeps up folds each batch alone, as soon as its window closes. Each batch completes (is acknowledged,
/// or fails and is redelivered) with its group.
/// </summary>
/// <param name="messageLimit">The most messages a group takes, unless its first batch alone holds more.</param>
/// <param name="messagesOf">A batch's number of messages.</param>
public sealed class GroupCommit<TBatch>(int messageLimit, Func<TBatch, int> messagesOf)
{
    readonly Lock _lock = new();
    readonly List<(TBatch Batch, TaskCompletionSource Folded)> _waiting = [];
    bool _folding;

    /// <summary>Completes when <paramref name="batch"/> is folded by <paramref name="fold"/>, in a group with whatever waited beside it.</summary>
    public Task FoldAsync(TBatch batch, Func<IReadOnlyList<TBatch>, Task> fold)
    {
        var folded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bool lead;
        lock (_lock)
        {
            _waiting.Add((batch, folded));
            lead = !_folding;
            _folding = true;
        }
        if (!lead) return folded.Task;
        // The loop outlives the batch that started it: it must not run inside that batch's consume span (or its scope).
        using (ExecutionContext.SuppressFlow()) _ = Task.Run(() => FoldWaitingAsync(fold));
        return folded.Task;
    }

    async Task FoldWaitingAsync(Func<IReadOnlyList<TBatch>, Task> fold)
    {
        while (Next() is { } group)
        {
            try
            {
                await fold([.. group.Select(g => g.Batch)]);
                foreach (var (_, folded) in group) folded.TrySetResult();
            }
            catch (Exception e)
            {
                foreach (var (_, folded) in group) folded.TrySetException(e);
            }
        }
    }

    /// <summary>The batches waiting, oldest first, up to the message limit (one batch at least); null, and no longer folding, when none waits.</summary>
    List<(TBatch Batch, TaskCompletionSource Folded)>? Next()
    {
        lock (_lock)
        {
            if (_waiting.Count == 0)
            {
                _folding = false;
                return null;
            }
            var taken = 0;
            var messages = 0;
            while (taken < _waiting.Count && (taken == 0 || messages + messagesOf(_waiting[taken].Batch) <= messageLimit))
                messages += messagesOf(_waiting[taken++].Batch);
            var group = _waiting[..taken];
            _waiting.RemoveRange(0, taken);
            return group;
        }
    }
}
