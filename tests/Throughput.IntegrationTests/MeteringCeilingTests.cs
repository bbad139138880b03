extern alias benchmarks;

using benchmarks::Throughput.Benchmarks.Harness;
using benchmarks::Throughput.Benchmarks.Metering;

namespace Throughput.IntegrationTests;

/// <summary>
/// The metering benchmark's raw ceiling, on the real broker and database: it must be bounded by what it is made to wait
/// for, write the rows it claims to, and a ceiling slowed on purpose must fail the ratio against an unslowed one.
/// Bounds only (never a speed the machine must reach), so a busy machine cannot make these fail.
/// </summary>
public sealed class MeteringCeilingTests
{
    // One partition, batches of at most 5 messages of 10 records: a 100 ms wait inside every transaction caps the path at
    // 10 batches/s, 500 records/s, whatever the machine.
    static readonly MeteringCeilingShape Shape = new(Deployments: 2, Producers: 1, RecordsPerMessage: 10, InFlight: 100_000, Partitions: 1,
        BatchMessageLimit: 5, BatchTimeLimit: TimeSpan.FromMilliseconds(5), CommitDelay: TimeSpan.Zero);

    [Fact]
    public async Task A_delay_in_every_transaction_caps_the_raw_rate_and_fails_the_ratio()
    {
        // Each deployment has one message in flight, so with two the unslowed path carried 20 records per broker round trip,
        // and a loaded CI machine brought that under the slowed cap's 500/s divided by 0.6. Twenty keep every batch full.
        var shape = Shape with { Deployments = 20 };
        var unslowed = await MeteringCeiling.MeasureAsync(shape, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), CancellationToken.None);
        var slowed = await MeteringCeiling.MeasureAsync(shape with { CommitDelay = TimeSpan.FromMilliseconds(100) }, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), CancellationToken.None);

        var rates = $"unslowed {unslowed.RecordsPerSecond:0}/s, slowed {slowed.RecordsPerSecond:0}/s";
        Assert.InRange(slowed.RecordsPerSecond, 1, 500 * 1.1); // 10 % for the window's edges
        Assert.True(unslowed.RecordsPerSecond > slowed.RecordsPerSecond, rates);
        Assert.False(new Ceiling(slowed.RecordsPerSecond, unslowed.RecordsPerSecond).AtLeast("records/s", 0.6, r => r.ToString("0", System.Globalization.CultureInfo.InvariantCulture)).Met, rates);
    }

    [Fact]
    public async Task Every_batch_is_written_as_a_claim_per_message_a_meter_per_deployment_the_event_and_its_stream()
    {
        var run = await MeteringCeiling.MeasureAsync(Shape, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), CancellationToken.None);

        var measured = run.ToString();
        Assert.True(run.MessagesPerBatch >= 1 && run.MessagesPerBatch <= Shape.BatchMessageLimit, measured);
        // Per batch: its messages, one or both deployments, the usage event and its stream's version. Both are averages over
        // the measured window, whose edges can cut a batch between its counts (CI saw 4.03): a tenth either way.
        var rowsBesideClaims = run.RowsPerBatch - run.MessagesPerBatch;
        Assert.True(rowsBesideClaims >= 3 - 0.1 && rowsBesideClaims <= 2 + Shape.Deployments + 0.1, measured);
        Assert.True(run.Committed <= run.Published, measured);
        Assert.True(run.Committed % Shape.RecordsPerMessage == 0, measured);
    }
}
