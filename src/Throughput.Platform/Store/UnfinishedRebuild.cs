using Marten;

namespace Throughput.Store;

/// <summary>
/// Written before a rebuild touches a projection and deleted once every projection it rebuilds is done: while it exists,
/// the write-side snapshots may be half rebuilt (a rebuild deletes them, then folds the log back into them page by page).
/// </summary>
/// <remarks>
/// A writer trusts its snapshot: the invoice register's last number, a pool's sold PTUs, a deployment's bucket. A host
/// started over a rebuild killed midway once reissued 3,221 invoice numbers from a register folded only part of the way.
/// </remarks>
public sealed record UnfinishedRebuild(string Id, DateTimeOffset StartedAt, string Machine, IReadOnlyList<string> Projections)
{
    public const string Key = "rebuild";

    public static async Task MarkAsync(IDocumentStore store, IReadOnlyList<string> projections, CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        session.Store(new UnfinishedRebuild(Key, DateTimeOffset.UtcNow, Environment.MachineName, projections));
        await session.SaveChangesAsync(ct);
    }

    public static async Task ClearAsync(IDocumentStore store, CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        session.Delete<UnfinishedRebuild>(Key);
        await session.SaveChangesAsync(ct);
    }

    public string Refusal(string schema) =>
        $"A projection rebuild of schema {schema} started at {StartedAt:u} on {Machine} "
        + $"({(Projections.Count == 0 ? "every projection" : string.Join(", ", Projections))}) did not finish: the write-side "
        + "snapshots may be half rebuilt, and writing from them would reissue invoice numbers and oversell pools. "
        + "With every host of the schema stopped, run bash infra/rebuild.sh: it rebuilds every projection and lets hosts start again.";
}

/// <summary>Refuses to start a host over an unfinished rebuild, before any writer of it starts.</summary>
public sealed class RebuildGate(IDocumentStore store, ILogger<RebuildGate> log) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        if (await session.LoadAsync<UnfinishedRebuild>(UnfinishedRebuild.Key, cancellationToken) is not { } unfinished) return;
        var refusal = unfinished.Refusal(store.Options.Events.DatabaseSchemaName);
        log.LogCritical("{Refusal}", refusal);
        throw new InvalidOperationException(refusal);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
