using System.Diagnostics;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;

namespace Throughput.Hosting;

/// <summary>
/// <c>dotnet Throughput.Platform.dll rebuild-projections [name …]</c>: rebuilds every projection (or the named ones)
/// from the event log with Marten's daemon, write-side snapshots first, then the async read models. Issued invoices
/// live in their events, so they come back byte for byte; drafts come back to the cent.
/// </summary>
public static class ProjectionRebuild
{
    static readonly TimeSpan ShardTimeout = TimeSpan.FromMinutes(30);

    public sealed record Rebuilt(string Projection, TimeSpan Took);

    /// <summary>Projection names in rebuild order: inline snapshots (other projections look deployments up in them) before async ones.</summary>
    public static IReadOnlyList<string> Names(IDocumentStore store) =>
        ((DocumentStore)store).Options.Projections.All.OfType<ProjectionBase>()
            .OrderBy(p => p.Lifecycle == ProjectionLifecycle.Inline ? 0 : 1)
            .Select(p => p.Name)
            .ToList();

    /// <summary>Rebuilds with the given daemon: the host's running one (it pauses and resumes the shards) or a daemon of its own.</summary>
    public static async Task<IReadOnlyList<Rebuilt>> RunAsync(IDocumentStore store, IProjectionDaemon daemon, IReadOnlyList<string> names, Action<string> report, CancellationToken ct)
    {
        var known = Names(store);
        var unknown = names.Except(known, StringComparer.Ordinal).ToList();
        if (unknown.Count > 0) throw new ArgumentException($"No projection named {string.Join(", ", unknown)}; known: {string.Join(", ", known)}");
        var results = new List<Rebuilt>();
        foreach (var name in names.Count == 0 ? known : known.Where(names.Contains))
        {
            var started = Stopwatch.GetTimestamp();
            await daemon.RebuildProjectionAsync(name, ShardTimeout, ct);
            results.Add(new Rebuilt(name, Stopwatch.GetElapsedTime(started)));
            report($"rebuilt {name} in {Stopwatch.GetElapsedTime(started).TotalSeconds:0.0} s");
        }
        return results;
    }

    /// <summary>
    /// Rebuilds inside a running host: its daemon is paused (so no agent of it competes for the shards), a daemon of the
    /// rebuild's own does the work, and the host's daemon resumes from where the rebuild left every projection.
    /// </summary>
    public static async Task<IReadOnlyList<Rebuilt>> RunInHostAsync(IServiceProvider services, IReadOnlyList<string> names, Action<string> report, CancellationToken ct)
    {
        var store = services.GetRequiredService<IDocumentStore>();
        var coordinator = services.GetRequiredService<IProjectionCoordinator>();
        await coordinator.PauseAsync();
        try
        {
            using var daemon = await store.BuildProjectionDaemonAsync();
            return await RunAsync(store, daemon, names, report, ct);
        }
        finally
        {
            await coordinator.ResumeAsync();
        }
    }

    /// <summary>The command-line mode: the host is built but not run, so no consumer, issuer or daemon of its own competes.</summary>
    public static async Task RunCommandAsync(IServiceProvider services, IReadOnlyList<string> names)
    {
        var store = services.GetRequiredService<IDocumentStore>();
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        using var daemon = await store.BuildProjectionDaemonAsync();
        var events = await store.Advanced.FetchEventStoreStatistics();
        Console.WriteLine($"rebuilding {(names.Count == 0 ? string.Join(", ", Names(store)) : string.Join(", ", names))} from {events.EventCount:N0} events");
        var started = Stopwatch.GetTimestamp();
        await RunAsync(store, daemon, names, Console.WriteLine, CancellationToken.None);
        var took = Stopwatch.GetElapsedTime(started);
        Console.WriteLine($"rebuilt in {took.TotalSeconds:0.0} s: {events.EventCount / Math.Max(took.TotalSeconds, 0.001):N0} events/s over the log");
    }
}
