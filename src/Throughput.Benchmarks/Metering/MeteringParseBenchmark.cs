using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Throughput.Benchmarks.Harness;
using Throughput.Contracts;
using Throughput.Metering;
using Throughput.Serving;

namespace Throughput.Benchmarks.Metering;

/// <summary>
/// The metering consumer's work per message before any I/O, on one thread: the SDK's JSON of one message read into the
/// platform's <see cref="MeteringFrame"/> (<see cref="MeteringFrameReader"/>, as the partition endpoints' deserializer
/// does) and hashed for the dedupe ledger (<see cref="AppliedBatches.ContentHash"/>), beside the raw floor of reading
/// those bytes at all: a <see cref="Utf8JsonReader"/> stepping over every token and taking no value.
/// </summary>
public sealed class MeteringParseBenchmark : IBenchmark
{
    public string Name => "metering-parse";

    public string Summary => "the consumer's per-message work before I/O (read the SDK's JSON into a frame, hash it for the ledger) beside stepping over the same bytes' tokens; one thread, records/s and bytes allocated per record";

    public IReadOnlyList<(string Option, string Meaning)> Options =>
    [
        ("duration", "seconds measured per path (5)"),
        ("warmup", "seconds of each path before measuring, for the JIT's tiers (3)"),
        ("records", "records per message (550: the metering benchmark's average at 16 deployments)"),
        ("deployments", "distinct deployments in a message (16)"),
    ];

    public Task<BenchmarkReport> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var duration = options.Seconds("duration", TimeSpan.FromSeconds(5));
        var warmup = options.Seconds("warmup", TimeSpan.FromSeconds(3));
        var records = options.Count("records", 550);
        var deployments = options.Count("deployments", 16);
        options.EnsureAllRead();

        var body = Message(records, deployments);
        Log($"one message of {records} records over {deployments} deployments, {body.Length:#,0} bytes; warming up");
        Run(body, Platform, warmup);
        Run(body, Raw, warmup);
        cancellationToken.ThrowIfCancellationRequested();
        var platform = Run(body, Platform, duration);
        Log($"platform: {platform.RecordsPerSecond(records):#,0} records/s");
        var raw = Run(body, Raw, duration);
        Log($"raw: {raw.RecordsPerSecond(records):#,0} records/s");

        var ratio = platform.RecordsPerSecond(records) / raw.RecordsPerSecond(records);
        return Task.FromResult(new BenchmarkReport(Name,
        [
            new("records/s read and hashed, 1 thread: platform / raw token walk",
                $"{Number(platform.RecordsPerSecond(records))} / raw {Number(raw.RecordsPerSecond(records))} = {ratio:0.00}"),
            new("ns per record: platform / raw", $"{1e9 / platform.RecordsPerSecond(records):0} / {1e9 / raw.RecordsPerSecond(records):0}"),
            new("bytes allocated per record: platform / raw", $"{platform.BytesPerMessage / records:0} / {raw.BytesPerMessage / records:0}"),
        ],
        [
            $"{duration.TotalSeconds:0} s per path after {warmup.TotalSeconds:0} s of it, one thread; one message of {records} records over {deployments} deployments written by the SDK's serializer ({body.Length:#,0} bytes, {body.Length / records} per record)",
            "platform = MeteringFrameReader.Read over the message's bytes, then AppliedBatches.ContentHash over its records (the consumer's two steps per message that need no database); raw = Utf8JsonReader.Read until the end of the same bytes, no value taken",
        ]));
    }

    // One reader for every message, as the partition endpoints' deserializer keeps one.
    static readonly MeteringFrameReader FrameReader = new();

    static long Platform(byte[] body)
    {
        var reader = new Utf8JsonReader(body);
        reader.Read();
        var frame = FrameReader.Read(ref reader, typeof(MeteringFrame), JsonSerializerOptions.Default);
        return AppliedBatches.ContentHash(frame.Records) ^ frame.Records.Count;
    }

    static long Raw(byte[] body)
    {
        var reader = new Utf8JsonReader(body);
        long tokens = 0;
        while (reader.Read()) tokens++;
        return tokens;
    }

    static byte[] Message(int records, int deployments)
    {
        var at = DateTimeOffset.UtcNow;
        var list = new List<MeteringRecord>(records);
        for (var i = 0; i < records; i++)
        {
            var id = "bench-3c76cff3-node0-" + (1_000_000 + i).ToString(CultureInfo.InvariantCulture);
            list.Add(LoadDriver.Uniform(id, "dep-" + (i % deployments).ToString("x8", CultureInfo.InvariantCulture), i, at));
        }
        var output = new ArrayBufferWriter<byte>();
        MeteringBatchJson.Write(output, "bench-3c76cff3-node0", 1, at, list);
        return output.WrittenSpan.ToArray();
    }

    readonly record struct PathRun(long Messages, TimeSpan Took, double BytesPerMessage)
    {
        public double RecordsPerSecond(int records) => Messages * records / Took.TotalSeconds;
    }

    static PathRun Run(byte[] body, Func<byte[], long> path, TimeSpan duration)
    {
        long messages = 0, sink = 0;
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var started = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(started) < duration)
        {
            for (var i = 0; i < 20; i++) sink += path(body);
            messages += 20;
        }
        var took = Stopwatch.GetElapsedTime(started);
        GC.KeepAlive(sink);
        return new PathRun(messages, took, (double)(GC.GetAllocatedBytesForCurrentThread() - allocated) / messages);
    }

    static string Number(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    static void Log(string line) => Console.WriteLine($"[metering-parse {DateTime.Now:HH:mm:ss}] {line}");
}
