using System.Buffers;
using System.Text.Json;
using System.Text.RegularExpressions;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Tests.Serving;

public sealed partial class MeteringBatchJsonTests
{
    static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    static readonly MeteringBatch Batch = new(
        MeteringTopology.CurrentVersion,
        "node-7:gpu.3",
        1_740_830_400_123_456,
        new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero).AddTicks(1234567),
        [
            new MeteringRecord("rec-1", "dep-chat", "req \"quoted\" é ✓ \\ /", 1200, 300, 450, false, 2000,
                new DateTimeOffset(2025, 3, 1, 11, 59, 58, TimeSpan.Zero), new DateTimeOffset(2025, 3, 1, 11, 59, 59, 500, TimeSpan.Zero)),
            new MeteringRecord("rec-2", "dep-chat", "", 0, 0, 10_000_000, true, 0,
                new DateTimeOffset(2025, 3, 1, 13, 59, 58, TimeSpan.FromHours(2)).AddTicks(7), new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero)),
        ]);

    [Fact]
    public void System_Text_Json_reads_the_SDKs_bytes_back_into_an_equal_batch()
    {
        var read = JsonSerializer.Deserialize<MeteringBatch>(Write(Batch), Web)!;

        Assert.Equal(Batch with { Records = [] }, read with { Records = [] });
        Assert.Equal(Batch.Records, read.Records);
    }

    [Fact]
    public void The_SDK_writes_exactly_the_fields_the_schema_requires_with_ISO_8601_timestamps()
    {
        using var schema = JsonDocument.Parse(File.ReadAllText(Path.Combine(SettingsTests.RepositoryRoot(), "contracts", "schemas", "metering-batch.v1.json")));
        using var written = JsonDocument.Parse(Write(Batch));
        var batch = written.RootElement;
        var record = batch.GetProperty("records")[0];

        Assert.Equal(Required(schema.RootElement), Names(batch));
        Assert.Equal(Required(schema.RootElement.GetProperty("$defs").GetProperty("record")), Names(record));
        Assert.Matches(Iso8601(), batch.GetProperty("sentAt").GetString());
        Assert.Matches(Iso8601(), record.GetProperty("startedAt").GetString());
        Assert.Equal(1, batch.GetProperty("version").GetInt32());
    }

    [Fact]
    public void A_pooled_body_grows_past_its_first_guess_without_losing_bytes()
    {
        var many = Batch with { Records = Enumerable.Range(0, 500).Select(i => Batch.Records[0] with { RecordId = $"rec-{i}" }).ToArray() };
        var expected = Write(many);

        using var body = new PooledBody(16);
        MeteringBatchJson.Write(body, many.ProducerId, many.Sequence, many.SentAt, many.Records);

        Assert.Equal(expected, body.Memory.ToArray());
    }

    static byte[] Write(MeteringBatch batch)
    {
        var output = new ArrayBufferWriter<byte>();
        MeteringBatchJson.Write(output, batch.ProducerId, batch.Sequence, batch.SentAt, batch.Records);
        return output.WrittenSpan.ToArray();
    }

    static string[] Required(JsonElement schema) =>
        schema.GetProperty("required").EnumerateArray().Select(e => e.GetString()!).Order().ToArray();

    static string[] Names(JsonElement element) => element.EnumerateObject().Select(p => p.Name).Order().ToArray();

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")]
    private static partial Regex Iso8601();
}
