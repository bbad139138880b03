using System.Diagnostics;
using JasperFx.Events;
using Marten;

namespace Throughput.Store;

/// <summary>
/// A member of the usage series' composite that folds nothing: it starts each page no sooner than the interval after the
/// previous one started, so a page holds the interval's usage. The series write a row per deployment and minute or hour a
/// page touches, and at thousands of deployments a page touches nearly all of them, so their database work follows the
/// number of pages rather than the usage; pages seconds apart instead of back to back cost a fraction of it, and a
/// minute's or an hour's row is seconds behind the log instead of one. The first page after a quiet spell starts at once,
/// and so does every full page: the series are behind (a rebuild, or a daemon catching up after a stop), and each page
/// already holds all it can.
/// </summary>
public sealed class SeriesPace(TimeSpan interval, int pageSize) : Marten.Events.Projections.IProjection
{
    long _previous;

    public async Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        if (_previous != 0 && events.Count < pageSize && interval - Stopwatch.GetElapsedTime(_previous) is { Ticks: > 0 } wait)
            await Task.Delay(wait, cancellation);
        _previous = Stopwatch.GetTimestamp();
    }
}
