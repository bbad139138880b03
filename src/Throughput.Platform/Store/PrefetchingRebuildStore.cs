using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.Events.Projections;
using Marten;

namespace Throughput.Store;

/// <summary>
/// The store of a full rebuild (<see cref="ProjectionRebuild.RunSinglePassAsync"/>): its event loaders read the next page
/// of the log while the daemon folds and writes the current one. The daemon's replay loop is strictly load → apply →
/// load, so reading and deserializing a page (about 40% of a rebuild's CPU in a profile) would otherwise leave the second
/// core idle. Marten builds loaders behind an explicit interface method; this class re-implements that one method and
/// keeps the rest.
/// </summary>
public sealed class PrefetchingRebuildStore(StoreOptions options) : DocumentStore(options), IEventStore<IDocumentOperations, IQuerySession>
{
    IEventLoader IEventStore<IDocumentOperations, IQuerySession>.BuildEventLoader(IEventDatabase database, ILogger logger,
        EventFilterable filtering, AsyncOptions shardOptions, ShardName shardName) =>
        // The shard-less overload is still Marten's own: only the tenant-partitioned event tables we do not use need the shard.
        new ReadAhead(((IEventStore<IDocumentOperations, IQuerySession>)this).BuildEventLoader(database, logger, filtering, shardOptions));

    /// <summary>
    /// Loads the page after each one it hands out. One load runs at a time, in page order, as the replay loop itself would
    /// (Marten's loader reuses one command); a request for anything but the page read ahead just loads it.
    /// </summary>
    sealed class ReadAhead(IEventLoader loader) : IEventLoader
    {
        (EventRequest Request, Task<EventPage> Page)? _ahead;

        public async Task<EventPage> LoadAsync(EventRequest request, CancellationToken token)
        {
            var ahead = _ahead;
            _ahead = null;
            EventPage page;
            if (ahead?.Request.Equals(request) == true) page = await ahead.Value.Page;
            else
            {
                // A read ahead that was not wanted must still finish before the loader's command is used again.
                if (ahead is { Page: var unwanted }) await unwanted.ContinueWith(static _ => { }, TaskScheduler.Default);
                page = await loader.LoadAsync(request, token);
            }
            if (page.Count > 0 && page.Ceiling < request.HighWater)
            {
                var next = new EventRequest
                {
                    Floor = page.Ceiling,
                    HighWater = request.HighWater,
                    BatchSize = request.BatchSize,
                    Name = request.Name,
                    ErrorOptions = request.ErrorOptions,
                    Runtime = request.Runtime,
                    Metrics = request.Metrics,
                };
                _ahead = (next, Task.Run(() => loader.LoadAsync(next, token), token));
            }
            return page;
        }
    }
}
