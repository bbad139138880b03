using System.Text;
using System.Text.Json;
using Throughput.Metering;

namespace Throughput.Tests.Domain;

public sealed class MeteringFrameSpecs
{
    const string Good = """{"recordId":"r1","deploymentId":"dep-1","requestId":"q","promptTokens":100,"cachedTokens":20,"outputTokens":7,"spilled":false,"estimatedTokens":140,"startedAt":"2026-11-22T10:00:00Z","finishedAt":"2026-11-22T10:00:01Z"}""";

    static MeteringFrame Read(string json) => JsonSerializer.Deserialize<MeteringFrame>(Encoding.UTF8.GetBytes(json))!;

    static string Batch(string records, string header = "\"version\":1,\"producerId\":\"node-1\",\"sequence\":5,\"sentAt\":\"2026-11-22T10:00:02Z\"") =>
        "{" + header + ",\"records\":[" + records + "]}";

    [Fact]
    public void A_valid_batch_reads_every_field()
    {
        var frame = Read(Batch(Good + "," + Good.Replace("r1", "r2")));
        Assert.Null(frame.Problem);
        Assert.Equal((1, "node-1", 5L), (frame.Version, frame.ProducerId, frame.Sequence));
        var r = frame.Records[0];
        Assert.Equal(("r1", "dep-1", 100L, 20L, 7L, false, 140L), (r.RecordId, r.DeploymentId, r.PromptTokens, r.CachedTokens, r.OutputTokens, r.Spilled, r.EstimatedTokens));
        Assert.Null(r.Problem);
        Assert.Same(frame.Records[0].DeploymentId, frame.Records[1].DeploymentId); // one string per deployment, not per record
    }

    [Theory]
    [InlineData("\"promptTokens\":100", "\"promptTokens\":-1", "promptTokens is negative")]
    [InlineData("\"outputTokens\":7", "\"outputTokens\":99999999999", "outputTokens is implausibly large")]
    [InlineData("\"promptTokens\":100", "\"promptTokens\":\"100\"", "promptTokens is not an integer")]
    [InlineData("\"promptTokens\":100", "\"promptTokens\":1.5", "promptTokens is not an integer")]
    [InlineData("\"cachedTokens\":20", "\"cachedTokens\":200", "cachedTokens exceeds promptTokens")]
    [InlineData("\"deploymentId\":\"dep-1\",", "", "deploymentId is missing")]
    [InlineData("\"recordId\":\"r1\"", "\"recordId\":\"r1'; drop table x;--\"", "recordId is missing or malformed")]
    [InlineData("\"spilled\":false", "\"spilled\":\"no\"", "spilled is missing or not a boolean")]
    [InlineData("\"finishedAt\":\"2026-11-22T10:00:01Z\"", "\"finishedAt\":\"2026-11-22T09:00:00Z\"", "finishedAt is before startedAt")]
    [InlineData("\"startedAt\":\"2026-11-22T10:00:00Z\"", "\"startedAt\":\"yesterday\"", "startedAt or finishedAt is missing")]
    public void A_bad_record_carries_its_reason_and_its_neighbours_stay_good(string field, string replacement, string reason)
    {
        var frame = Read(Batch(Good.Replace(field, replacement).Replace("r1", "bad") + "," + Good));
        Assert.Null(frame.Problem);
        Assert.Contains(reason, frame.Records[0].Problem);
        Assert.Null(frame.Records[1].Problem);
    }

    [Theory]
    [InlineData("\"version\":2,\"producerId\":\"node-1\",\"sequence\":5,\"sentAt\":\"2026-11-22T10:00:02Z\"", "version 2 is not supported")]
    [InlineData("\"producerId\":\"node-1\",\"sequence\":5,\"sentAt\":\"2026-11-22T10:00:02Z\"", "version is missing")]
    [InlineData("\"version\":1,\"sequence\":5,\"sentAt\":\"2026-11-22T10:00:02Z\"", "producerId is missing")]
    [InlineData("\"version\":1,\"producerId\":\"node-1\",\"sequence\":0,\"sentAt\":\"2026-11-22T10:00:02Z\"", "sequence is missing or not a positive integer")]
    [InlineData("\"version\":1,\"producerId\":\"node-1\",\"sequence\":5", "sentAt is missing")]
    public void A_bad_header_makes_the_whole_message_a_problem(string header, string reason) =>
        Assert.Contains(reason, Read(Batch(Good, header)).Problem);

    [Fact]
    public void Oversized_empty_and_non_object_messages_are_problems()
    {
        Assert.Contains("more than 10000 records", Read(Batch(string.Join(",", Enumerable.Repeat(Good, 10_001)))).Problem);
        Assert.Contains("no records", Read(Batch("")).Problem);
        Assert.Contains("not a JSON object", Read("[1,2,3]").Problem);
        Assert.Contains("records must be an array", Read("{\"version\":1,\"records\":{}}").Problem);
    }

    [Fact]
    public void Unknown_fields_are_ignored_for_forward_compatibility()
    {
        var frame = Read(Batch(Good.Replace("\"spilled\":false", "\"spilled\":false,\"gpu\":{\"kind\":\"h100\",\"ids\":[1,2]}")).Replace("\"records\"", "\"region\":\"eastus\",\"records\""));
        Assert.Null(frame.Problem);
        Assert.Null(frame.Records[0].Problem);
    }

    [Fact]
    public void Field_names_are_matched_whole_and_as_their_unescaped_text()
    {
        // Escaped names are legal JSON for the same field; a name of a field's length and first letter is another field.
        var escaped = Read(Batch(Good.Replace("\"promptTokens\"", "\"prompt\\u0054okens\"").Replace("\"recordId\"", "\"\\u0072ecordId\"")));
        Assert.Null(escaped.Records[0].Problem);
        Assert.Equal(("r1", 100L), (escaped.Records[0].RecordId, escaped.Records[0].PromptTokens));

        var lookalike = Read(Batch(Good.Replace("\"promptTokens\":100", "\"promptTokens\":100,\"pendingTokens\":5,\"startedAx\":\"x\",\"s\":1")));
        Assert.Null(lookalike.Records[0].Problem);
        Assert.Equal(100L, lookalike.Records[0].PromptTokens);
        Assert.Contains("promptTokens is missing", Read(Batch(Good.Replace("\"promptTokens\"", "\"promptTokenz\""))).Records[0].Problem);
    }

    [Fact]
    public void A_frame_written_back_reads_the_same()
    {
        var frame = Read(Batch(Good));
        var again = JsonSerializer.Deserialize<MeteringFrame>(JsonSerializer.SerializeToUtf8Bytes(frame))!;
        Assert.Equal(frame.Records, again.Records);
        Assert.Equal((frame.ProducerId, frame.Sequence, frame.SentAt), (again.ProducerId, again.Sequence, again.SentAt));
    }
}
