using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Tests.Serving;

public sealed class MeteringBufferTests
{
    const long FirstSequence = 1_000;
    static readonly TimeSpan Linger = TimeSpan.FromMilliseconds(20);

    readonly ManualClock _clock = new();

    MeteringBuffer Buffer(int maxBatchRecords) => new(maxBatchRecords, Linger, FirstSequence, _clock);

    static string LaneOf(string deployment) => MeteringTopology.LaneKey(MeteringTopology.LaneOf(deployment));

    static MeteringRecord Record(string deployment, int n) =>
        new($"{deployment}-{n}", deployment, $"req-{n}", 100, 0, 50, false, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch);

    [Fact]
    public void A_batch_is_sealed_when_it_reaches_the_size_limit()
    {
        var buffer = Buffer(maxBatchRecords: 3);

        Assert.Null(buffer.Add(Record("dep-a", 1)));
        Assert.Null(buffer.Add(Record("dep-a", 2)));
        var batch = buffer.Add(Record("dep-a", 3));

        Assert.NotNull(batch);
        Assert.Equal(FirstSequence, batch.Sequence);
        Assert.Equal(LaneOf("dep-a"), batch.RoutingKey);
        Assert.Equal(["dep-a-1", "dep-a-2", "dep-a-3"], batch.Records.Select(r => r.RecordId));
        Assert.Equal(_clock.GetUtcNow(), batch.SentAt);
        Assert.Equal(0, buffer.OpenBatches);
    }

    [Fact]
    public void Records_of_different_lanes_never_share_a_batch_and_every_batch_takes_the_next_sequence()
    {
        var buffer = Buffer(maxBatchRecords: 4);
        var deployments = new[] { "dep-a", "dep-b", "dep-10" }; // dep-a and dep-10 share lane 0
        Assert.Equal(LaneOf("dep-a"), LaneOf("dep-10"));
        Assert.NotEqual(LaneOf("dep-a"), LaneOf("dep-b"));
        var published = new List<(long Sequence, string Lane, string[] Records)>();
        var inFlight = new List<SealedBatch>();

        for (var n = 0; n < 50; n++)
        {
            if (buffer.Add(Record(deployments[n % 3 == 0 ? 0 : n % 2 + 1], n)) is { } ready) inFlight.Add(ready);
        }
        buffer.SealAll(inFlight);
        while (inFlight.Count > 0)
        {
            var batch = inFlight[0];
            inFlight.RemoveAt(0);
            published.Add((batch.Sequence, batch.RoutingKey, batch.Records.Select(r => r.RecordId).ToArray()));
            if (buffer.Confirm(batch) is { } next) inFlight.Add(next);
        }

        Assert.All(published, b => Assert.All(b.Records, id => Assert.Equal(b.Lane, LaneOf(id[..id.LastIndexOf('-')]))));
        Assert.Contains(published, b => b.Records.Any(id => id.StartsWith("dep-a-")) && b.Records.Any(id => id.StartsWith("dep-10-")));
        Assert.All(published, b => Assert.InRange(b.Records.Length, 1, 4));
        Assert.Equal(50, published.Sum(b => b.Records.Length));
        Assert.Equal(50, published.SelectMany(b => b.Records).Distinct().Count());
        var sequences = published.Select(b => b.Sequence).Order().ToArray();
        Assert.Equal(Enumerable.Range(0, sequences.Length).Select(i => FirstSequence + i), sequences);
        foreach (var lane in deployments.Select(LaneOf).Distinct())
        {
            var ofLane = published.Where(b => b.Lane == lane).Select(b => b.Sequence).ToArray();
            Assert.Equal(ofLane.Order(), ofLane); // released in sequence order per lane
        }
    }

    [Fact]
    public void A_deployment_has_one_batch_in_flight_and_its_confirm_releases_the_next()
    {
        var buffer = Buffer(maxBatchRecords: 2);

        var first = buffer.Add(Record("dep-a", 1)) ?? buffer.Add(Record("dep-a", 2));
        Assert.NotNull(first);
        Assert.Null(buffer.Add(Record("dep-a", 3)));
        Assert.Null(buffer.Add(Record("dep-a", 4))); // sealed, but waits behind the batch in flight
        Assert.Null(buffer.Add(Record("dep-b", 1)));
        var other = buffer.Add(Record("dep-b", 2)); // another deployment is not held back
        Assert.NotNull(other);
        Assert.Equal(FirstSequence, buffer.LowestUnconfirmedSequence());

        var second = buffer.Confirm(first);

        Assert.NotNull(second);
        Assert.Equal(["dep-a-3", "dep-a-4"], second.Records.Select(r => r.RecordId));
        Assert.Equal(first.Sequence + 1, second.Sequence);
        Assert.True(other.Sequence > second.Sequence);
        Assert.Equal(second.Sequence, buffer.LowestUnconfirmedSequence());
        Assert.Null(buffer.Confirm(second));
        Assert.Null(buffer.Confirm(other));
        Assert.Null(buffer.LowestUnconfirmedSequence());
    }

    [Fact]
    public void Confirming_a_batch_that_is_not_in_flight_is_a_bug()
    {
        var buffer = Buffer(maxBatchRecords: 1);
        var first = buffer.Add(Record("dep-a", 1))!;
        Assert.Null(buffer.Add(Record("dep-a", 2)));

        buffer.Confirm(first);

        Assert.Throws<InvalidOperationException>(() => buffer.Confirm(first));
    }

    [Fact]
    public void An_open_batch_is_sealed_once_it_has_lingered()
    {
        var buffer = Buffer(maxBatchRecords: 100);
        var ready = new List<SealedBatch>();
        buffer.Add(Record("dep-a", 1));

        _clock.Advance(Linger - TimeSpan.FromMilliseconds(1));
        buffer.SealExpired(ready);
        Assert.Empty(ready);
        Assert.Equal(1, buffer.OpenBatches);

        _clock.Advance(TimeSpan.FromMilliseconds(1));
        buffer.SealExpired(ready);
        var batch = Assert.Single(ready);
        Assert.Single(batch.Records);
        Assert.Equal(0, buffer.OpenBatches);
    }

    [Fact]
    public void A_busy_deployment_keeps_filling_its_open_batch_until_the_batch_in_flight_is_confirmed()
    {
        var buffer = Buffer(maxBatchRecords: 100);
        var ready = new List<SealedBatch>();
        buffer.Add(Record("dep-a", 1));
        _clock.Advance(Linger);
        buffer.SealExpired(ready);
        var inFlight = Assert.Single(ready);
        ready.Clear();

        buffer.Add(Record("dep-a", 2));
        _clock.Advance(Linger);
        buffer.Add(Record("dep-a", 3));
        buffer.SealExpired(ready);
        Assert.Empty(ready);

        var next = buffer.Confirm(inFlight);

        Assert.NotNull(next);
        Assert.Equal(["dep-a-2", "dep-a-3"], next.Records.Select(r => r.RecordId));
    }

    [Fact]
    public void A_flush_seals_every_open_batch_and_queues_those_of_busy_deployments()
    {
        var buffer = Buffer(maxBatchRecords: 2);
        var busy = buffer.Add(Record("dep-a", 1)) ?? buffer.Add(Record("dep-a", 2));
        buffer.Add(Record("dep-a", 3));
        buffer.Add(Record("dep-b", 1));
        var ready = new List<SealedBatch>();

        buffer.SealAll(ready);

        var idle = Assert.Single(ready);
        Assert.Equal(LaneOf("dep-b"), idle.RoutingKey);
        Assert.Equal(0, buffer.OpenBatches);
        Assert.Equal(FirstSequence + 2, buffer.LastSequence);
        var queued = buffer.Confirm(busy!);
        Assert.Equal(["dep-a-3"], queued!.Records.Select(r => r.RecordId));
    }

    [Fact]
    public void A_confirmed_deployment_with_nothing_left_is_forgotten_and_starts_afresh()
    {
        var buffer = Buffer(maxBatchRecords: 1);
        var first = buffer.Add(Record("dep-a", 1))!;
        Assert.Null(buffer.Confirm(first));

        var again = buffer.Add(Record("dep-a", 2));

        Assert.NotNull(again); // nothing in flight any more: ready at once
        Assert.Equal(first.Sequence + 1, again.Sequence);
    }
}

public class MeteringLaneTests
{
    // Worked out apart from the code (FNV-1a 32 over UTF-8, mod 64), as a node in another language would.
    [Theory]
    [InlineData("dep-a", 0)]
    [InlineData("dep-b", 57)]
    [InlineData("dep-c", 38)]
    [InlineData("dep-10", 0)]
    public void A_deployments_lane_is_fnv1a_of_its_id_modulo_the_lane_count(string deploymentId, int lane)
    {
        Assert.Equal(lane, MeteringTopology.LaneOf(deploymentId));
        Assert.Equal($"lane.{lane}", MeteringTopology.LaneKey(lane));
    }
}
