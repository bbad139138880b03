using Throughput.Benchmarks.Metering;

namespace Throughput.Tests.Benchmarks;

/// <summary>The metering benchmarks' latency: each deployment's records in a usage event counted from that deployment's oldest record there, so never below a record's own latency.</summary>
public sealed class PublishToDurableTests
{
    static readonly DateTimeOffset Observed = DateTimeOffset.Parse("2026-12-06T00:00:02Z");

    [Fact]
    public void An_event_s_columns_read_as_one_entry_per_deployment()
    {
        var entries = DurableObserver.EntriesOf("[3,1]", """["2026-12-06T00:00:01Z","2026-12-06T00:00:00.5Z"]""");

        Assert.Equal([new(DateTimeOffset.Parse("2026-12-06T00:00:01Z"), 3), new(DateTimeOffset.Parse("2026-12-06T00:00:00.5Z"), 1)], entries);
    }

    [Fact]
    public void An_event_stored_as_bytes_reads_its_records_and_start_times_from_its_columns()
    {
        var entries = DurableObserver.EntriesOf("""{"deploymentId":["a","b"],"producers":[["n",1,2],["n",3,3]],"records":[3,1],"firstStartedAt":["2026-12-06T00:00:01Z","2026-12-06T00:00:00.5Z"],"meteredAt":"2026-12-06T00:00:02Z"}"""u8);

        Assert.Equal([new(DateTimeOffset.Parse("2026-12-06T00:00:01Z"), 3), new(DateTimeOffset.Parse("2026-12-06T00:00:00.5Z"), 1)], entries);
    }

    [Fact]
    public void A_single_usage_event_reads_as_one_entry()
    {
        var entries = DurableObserver.EntriesOf("7", "2026-12-06T00:00:01Z");

        Assert.Equal([new UsageEntry(DateTimeOffset.Parse("2026-12-06T00:00:01Z"), 7)], entries);
    }

    [Fact]
    public void Each_deployment_s_records_count_from_their_own_oldest_and_the_event_bound_from_the_event_s_oldest()
    {
        var entries = DurableObserver.EntriesOf("[3,1]", """["2026-12-06T00:00:01Z","2026-12-06T00:00:00.5Z"]""");
        var run = RunOf(new DurableBatch(1, Observed, Observed, false, entries));

        Assert.Equal(1_000, run.PublishToDurable(50));
        Assert.Equal(1_500, run.PublishToDurable(99));
        Assert.Equal(1_500, run.PublishToDurableByEvent(50));
    }

    static MeteringRun RunOf(params DurableBatch[] batches) => new(Observed.AddSeconds(-10), Observed.AddSeconds(1), batches, batches, true, 4, 4, 4, 0, true, 1,
        0, 0, 0, [], 0, 1, (0, 0));
}
