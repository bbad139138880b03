using Throughput.Metering;

namespace Throughput.Tests.Domain;

/// <summary>A partition's batches: alone while it keeps up, together while it is behind, each completing with its group.</summary>
public sealed class GroupCommitSpecs
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    // A batch is its messages' numbers; the fold records each group it was handed.
    sealed class Folds
    {
        readonly List<int[][]> _groups = [];
        public TaskCompletionSource? Hold { get; set; }
        public Exception? Failure { get; set; }

        public IReadOnlyList<int[][]> Groups
        {
            get
            {
                lock (_groups) return [.. _groups];
            }
        }

        public async Task FoldAsync(IReadOnlyList<int[]> group)
        {
            lock (_groups) _groups.Add([.. group]);
            if (Hold is { } hold) await hold.Task;
            if (Failure is { } failure) throw failure;
        }
    }

    static GroupCommit<int[]> Commit(int messageLimit = 200) => new(messageLimit, batch => batch.Length);

    [Fact]
    public async Task A_batch_that_finds_the_partition_idle_is_folded_alone_at_once()
    {
        var folds = new Folds();
        var commit = Commit();

        await commit.FoldAsync([1, 2], folds.FoldAsync).WaitAsync(Timeout);
        await commit.FoldAsync([3], folds.FoldAsync).WaitAsync(Timeout);

        Assert.Equal([[[1, 2]], [[3]]], folds.Groups);
    }

    [Fact]
    public async Task Batches_that_arrive_while_one_folds_wait_and_are_folded_next_as_one_group()
    {
        var folds = new Folds { Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var commit = Commit();

        var first = commit.FoldAsync([1], folds.FoldAsync);
        await Until(() => folds.Groups.Count == 1);
        var waiting = new[] { commit.FoldAsync([2, 3], folds.FoldAsync), commit.FoldAsync([4], folds.FoldAsync), commit.FoldAsync([5], folds.FoldAsync) };
        Assert.False(first.IsCompleted);
        Assert.All(waiting, w => Assert.False(w.IsCompleted));

        folds.Hold.SetResult();
        await Task.WhenAll([first, .. waiting]).WaitAsync(Timeout);

        Assert.Equal([[[1]], [[2, 3], [4], [5]]], folds.Groups);
    }

    [Fact]
    public async Task A_group_takes_batches_up_to_the_message_limit_and_the_rest_fold_after_it()
    {
        var folds = new Folds { Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var commit = Commit(messageLimit: 3);

        var first = commit.FoldAsync([1, 2, 3, 4], folds.FoldAsync); // larger than the limit alone: still folded
        await Until(() => folds.Groups.Count == 1);
        var waiting = new[] { commit.FoldAsync([5, 6], folds.FoldAsync), commit.FoldAsync([7], folds.FoldAsync), commit.FoldAsync([8], folds.FoldAsync) };

        folds.Hold.SetResult();
        await Task.WhenAll([first, .. waiting]).WaitAsync(Timeout);

        Assert.Equal([[[1, 2, 3, 4]], [[5, 6], [7]], [[8]]], folds.Groups);
    }

    [Fact]
    public async Task A_failed_fold_fails_every_batch_of_its_group_and_the_next_batch_still_folds()
    {
        var folds = new Folds { Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var commit = Commit();
        var first = commit.FoldAsync([1], folds.FoldAsync);
        await Until(() => folds.Groups.Count == 1);
        var waiting = new[] { commit.FoldAsync([2], folds.FoldAsync), commit.FoldAsync([3], folds.FoldAsync) };

        folds.Failure = new InvalidOperationException("a concurrent writer");
        folds.Hold.SetResult();

        foreach (var batch in (Task[])[first, .. waiting])
            Assert.Equal("a concurrent writer", (await Assert.ThrowsAsync<InvalidOperationException>(() => batch.WaitAsync(Timeout))).Message);
        folds.Failure = null;
        await commit.FoldAsync([4], folds.FoldAsync).WaitAsync(Timeout);
        Assert.Equal([[[1]], [[2], [3]], [[4]]], folds.Groups);
    }

    static async Task Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(5);
        }
    }
}
