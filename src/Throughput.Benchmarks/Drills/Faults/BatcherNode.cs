using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Demo;
using Throughput.Flywheel.Load;
using Throughput.Serving;

namespace Throughput.Benchmarks.Drills.Faults;

/// <summary>A deployment the drill's serving nodes serve: its customer, whether it spills over, and how far its traffic exceeds what it bought.</summary>
public sealed record DrillDeployment(Provisioned Customer, bool Spillover, double OfferedFactor)
{
    public string Id => Customer.DeploymentId;
}

/// <summary>Where and how a serving node runs; with <paramref name="Leases"/> it admits within its own lease on each deployment.</summary>
public sealed record NodeSettings(string ProducerId, Uri Broker, string MeteringExchange, string Region, string Model, FleetOptions Fleet, int NodeCount, bool Leases);

/// <summary>
/// One serving node of the drill: the reference Flywheel batcher (simulated GPUs, chunked prefill) in real time, admitting
/// through its own <see cref="AdmissionCache"/> kept current by an <see cref="AdmissionFeed"/>, and metering every finished
/// request through its own <see cref="MeteringPublisher"/>. With leases (the fault drill) it admits within its own lease on
/// each deployment, renewed by the feed (docs/replicas.md), so the nodes' shares sum to what was bought. Its loop never waits
/// on the platform: while the platform is away it admits with the limits and leases it last knew and the publisher buffers. A load balancer in front gives each node an equal
/// share of every deployment's traffic. It counts what it hands to the publisher, and what it does while a fault lasts.
/// </summary>
public sealed class BatcherNode : IAsyncDisposable
{
    readonly Lock _gate = new();
    readonly NodeSettings _settings;
    readonly Fleet _fleet;
    readonly List<Arrivals> _arrivals = [];
    readonly Dictionary<string, UsageCounter> _published = new(StringComparer.Ordinal);
    readonly CancellationTokenSource _stop = new();
    OutageWindow? _window;
    TaskCompletionSource? _paused;
    TaskCompletionSource? _resume;
    Task? _loop;
    long _handedOver;
    long _feedFailures;
    long _publishFailures;

    BatcherNode(NodeSettings settings, AdmissionCache cache)
    {
        _settings = settings;
        Cache = cache;
        _fleet = new Fleet(settings.Fleet, cache);
    }

    public string ProducerId => _settings.ProducerId;

    public AdmissionCache Cache { get; }

    public AdmissionFeed Feed { get; private set; } = null!;

    public MeteringPublisher Publisher { get; private set; } = null!;

    /// <summary>The client-provided names of the node's two broker connections (metering, admission), for cutting them.</summary>
    public IReadOnlyList<string> ConnectionNames => [$"throughput-serving:{ProducerId}", $"throughput-admission:{ProducerId}"];

    public long HandedOver => Interlocked.Read(ref _handedOver);

    public long FeedFailures => Interlocked.Read(ref _feedFailures);

    public long PublishFailures => Interlocked.Read(ref _publishFailures);

    /// <summary>Subscribes to admission, waits for every deployment's limit, connects the publisher and starts serving.</summary>
    public static async Task<BatcherNode> StartAsync(NodeSettings settings, HttpClient platform, IReadOnlyList<DrillDeployment> deployments, int seed, CancellationToken ct)
    {
        var node = new BatcherNode(settings, new AdmissionCache(new AdmissionCacheOptions { Leases = settings.Leases }));
        try
        {
            node.Feed = await AdmissionFeed.StartAsync(node.Cache, platform, new AdmissionFeedOptions(settings.Broker)
            {
                Region = settings.Region,
                Model = settings.Model,
                ConnectionName = node.ConnectionNames[1],
                Failed = _ => Interlocked.Increment(ref node._feedFailures),
            }, ct);
            var limits = await DemoRun.KnownLimitsAsync(node.Feed, [.. deployments.Select(d => d.Customer)], ct);
            node.Publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(settings.Broker, settings.ProducerId)
            {
                Exchange = settings.MeteringExchange,
                ConnectionName = node.ConnectionNames[0],
                PublishFailed = _ => Interlocked.Increment(ref node._publishFailures),
            }, ct);
            var start = DateTimeOffset.UtcNow;
            foreach (var (deployment, n) in deployments.Select((d, n) => (d, n)))
            {
                var limit = limits[deployment.Id];
                var share = deployment.OfferedFactor / settings.NodeCount;
                var workload = deployment.Customer.Customer.Workload;
                node._arrivals.Add(new Arrivals(deployment.Id, workload, limit.TokensPerMinute * share, limit.TokensPerMinute * deployment.Customer.Customer.BacklogMinutes / settings.NodeCount,
                    (double)limit.OutputWeight, (double)limit.CachedDeduction, start, seed * 100 + n));
                node._published[deployment.Id] = new UsageCounter(limit.OutputWeight, limit.CachedDeduction);
            }
            node._loop = Task.Run(node.ServeAsync, CancellationToken.None);
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// One node per producer, each connecting to the platform's broker with its own user, sharing every deployment of the
    /// world; added to <paramref name="nodes"/> as they start, so the caller disposes those started if a later one fails.
    /// </summary>
    public static async Task StartEachAsync(List<BatcherNode> nodes, DrillWorld world, IReadOnlyList<string> producers, string exchange, FleetOptions fleet, bool leases, CancellationToken ct)
    {
        var broker = Harness.Services.PlatformBroker().Uri; // its address; each node connects with its own user instead
        foreach (var (producer, n) in producers.Select((p, n) => (p, n)))
        {
            var settings = new NodeSettings(producer, world.NodeAccess[producer].Broker(broker), exchange, world.Region, world.Model, fleet, producers.Count, leases);
            nodes.Add(await StartAsync(settings, world.ServingNodes[producer], world.Deployments, n, ct));
        }
    }

    /// <summary>Starts measuring what the node does until <see cref="CloseWindow"/>.</summary>
    public void OpenWindow()
    {
        lock (_gate) _window = OutageWindow.Open(DateTimeOffset.UtcNow, Cache, _published.Keys);
    }

    public OutageWindow CloseWindow()
    {
        lock (_gate)
        {
            var window = _window ?? throw new InvalidOperationException("No window is open.");
            _window = null;
            return window;
        }
    }

    /// <summary>Stops serving after the current iteration (requests keep arriving and queue); completes once the loop has stopped.</summary>
    public Task PauseAsync()
    {
        lock (_gate)
        {
            _paused = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _paused.Task;
        }
    }

    public void Resume()
    {
        lock (_gate)
        {
            _resume?.TrySetResult();
            _resume = null;
        }
    }

    /// <summary>Per deployment, the sums of every record handed to the publisher so far.</summary>
    public Dictionary<string, UsageFigures> Published()
    {
        lock (_gate) return _published.ToDictionary(p => p.Key, p => p.Value.Figures(), StringComparer.Ordinal);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        lock (_gate) _resume?.TrySetResult();
        if (_loop is not null) await _loop;
        if (Publisher is not null) await Publisher.DisposeAsync();
        if (Feed is not null) await Feed.DisposeAsync();
        _stop.Dispose();
    }

    async Task ServeAsync()
    {
        var stop = _stop.Token;
        var next = DateTimeOffset.UtcNow;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                Task? resume = null;
                lock (_gate)
                {
                    if (_resume is { } pending)
                    {
                        _paused?.TrySetResult();
                        resume = pending.Task;
                    }
                }
                if (resume is not null)
                {
                    await resume.WaitAsync(stop);
                    next = DateTimeOffset.UtcNow;
                }
                var now = DateTimeOffset.UtcNow;
                if (next > now) await Task.Delay(next - now, stop);

                FleetStep step;
                lock (_gate)
                {
                    foreach (var source in _arrivals)
                    {
                        foreach (var request in source.Until(next)) _fleet.Enqueue(request);
                    }
                    step = _fleet.Step(next);
                    _window?.Observe(step);
                }
                foreach (var sequence in step.Finished)
                {
                    var record = DemoRun.Metered(ProducerId, sequence);
                    // Not cancellable: a record goes to the publisher whole or not at all, so the published sums stay exact.
                    await Publisher.RecordAsync(record, CancellationToken.None);
                    Interlocked.Increment(ref _handedOver);
                    lock (_gate) _published[record.DeploymentId].Add(record);
                }
                next += _settings.Fleet.IterationTime;
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopped.
        }
    }
}
