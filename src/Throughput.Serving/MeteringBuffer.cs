using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>
/// A batch whose sequence is fixed for good: every republish sends this sequence with these records.
/// The records of one lane's deployments only, so the batch has one routing key, and one partition meters all of it.
/// </summary>
internal sealed record SealedBatch(string RoutingKey, long Sequence, DateTimeOffset SentAt, List<MeteringRecord> Records);

/// <summary>
/// What the publisher holds in memory, without any I/O: per lane (<see cref="MeteringTopology.LaneOf"/>) an open
/// batch that fills up, at most one sealed batch in flight, and the sealed batches waiting behind it. A lane's next
/// batch is handed out only when the previous one is confirmed, so the broker receives each deployment's batches
/// in sequence order even across republishes. Batching per lane rather than per deployment keeps messages large
/// however thinly a node's traffic is spread over deployments.
/// Not thread-safe: the publisher locks around every call.
/// </summary>
internal sealed class MeteringBuffer(int maxBatchRecords, TimeSpan maxLinger, long initialSequence, TimeProvider clock)
{
    const int SpareListLimit = 64;

    readonly Dictionary<string, Lane> _lanes = new(StringComparer.Ordinal);
    readonly Stack<List<MeteringRecord>> _spareLists = new();
    long _nextSequence = initialSequence;

    /// <summary>The sequence of the most recently sealed batch (one below the initial sequence before any).</summary>
    public long LastSequence => _nextSequence - 1;

    /// <summary>Deployments holding records not yet sealed into a batch.</summary>
    public int OpenBatches { get; private set; }

    /// <summary>Adds a record; returns a batch to publish now when the record filled one and its deployment has nothing in flight.</summary>
    public SealedBatch? Add(MeteringRecord record)
    {
        var key = MeteringTopology.LaneKey(MeteringTopology.LaneOf(record.DeploymentId));
        if (!_lanes.TryGetValue(key, out var lane))
            _lanes.Add(key, lane = new Lane(key));
        if (lane.Open is null)
        {
            lane.Open = _spareLists.TryPop(out var spare) ? spare : new List<MeteringRecord>(Math.Min(maxBatchRecords, 1024));
            lane.OpenedAt = clock.GetTimestamp();
            OpenBatches++;
        }
        lane.Open.Add(record);
        return lane.Open.Count >= maxBatchRecords ? Seal(lane) : null;
    }

    /// <summary>
    /// Seals the open batches that have lingered long enough, into <paramref name="ready"/> those that can be published now.
    /// A lane with a batch in flight keeps filling its open batch instead: it could not be sent earlier anyway,
    /// and it seals when the batch in flight is confirmed.
    /// </summary>
    public void SealExpired(List<SealedBatch> ready)
    {
        foreach (var lane in _lanes.Values)
        {
            if (lane.Open is not null && lane.InFlight is null && Lingered(lane) && Seal(lane) is { } batch)
                ready.Add(batch);
        }
    }

    /// <summary>Seals every open batch (a flush); into <paramref name="ready"/> those that can be published now.</summary>
    public void SealAll(List<SealedBatch> ready)
    {
        foreach (var lane in _lanes.Values)
        {
            if (lane.Open is not null && Seal(lane) is { } batch)
                ready.Add(batch);
        }
    }

    /// <summary>
    /// Records the broker's confirm of the lane's batch in flight and returns the lane's next batch to publish, if any.
    /// The confirmed batch's record list goes back to the pool: do not read it afterwards.
    /// </summary>
    public SealedBatch? Confirm(SealedBatch batch)
    {
        var lane = _lanes[batch.RoutingKey];
        if (!ReferenceEquals(lane.InFlight, batch))
            throw new InvalidOperationException($"Batch {batch.Sequence} of {batch.RoutingKey} is not the one in flight.");
        Recycle(batch.Records);

        if (lane.Waiting.TryDequeue(out var next)) return lane.InFlight = next;
        lane.InFlight = null;
        if (lane.Open is null)
        {
            _lanes.Remove(lane.RoutingKey); // idle: an idle lane costs nothing
            return null;
        }
        return Lingered(lane) ? Seal(lane) : null;
    }

    /// <summary>The lowest sequence published but not yet confirmed; null when nothing is in flight.</summary>
    public long? LowestUnconfirmedSequence()
    {
        long? lowest = null;
        foreach (var lane in _lanes.Values)
        {
            // A lane's waiting batches all have higher sequences than its batch in flight.
            if (lane.InFlight is { } batch && (lowest is null || batch.Sequence < lowest))
                lowest = batch.Sequence;
        }
        return lowest;
    }

    SealedBatch? Seal(Lane lane)
    {
        var batch = new SealedBatch(lane.RoutingKey, _nextSequence++, clock.GetUtcNow(), lane.Open!);
        lane.Open = null;
        OpenBatches--;
        if (lane.InFlight is null) return lane.InFlight = batch;
        lane.Waiting.Enqueue(batch);
        return null;
    }

    bool Lingered(Lane lane) => clock.GetElapsedTime(lane.OpenedAt) >= maxLinger;

    void Recycle(List<MeteringRecord> records)
    {
        if (_spareLists.Count >= SpareListLimit) return;
        records.Clear();
        _spareLists.Push(records);
    }

    sealed class Lane(string routingKey)
    {
        public readonly string RoutingKey = routingKey;
        public readonly Queue<SealedBatch> Waiting = new();
        public List<MeteringRecord>? Open;
        public long OpenedAt;
        public SealedBatch? InFlight;
    }
}
