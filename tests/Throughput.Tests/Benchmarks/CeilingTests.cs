using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Throughput.Benchmarks.Admission;
using Throughput.Benchmarks.Harness;

namespace Throughput.Tests.Benchmarks;

/// <summary>The benchmarks' ceilings: a ratio is only worth reporting if the harness computes it right and its raw side measures what it says.</summary>
public sealed class CeilingTests
{
    static string Plain(double value) => value.ToString("0.##", CultureInfo.InvariantCulture);

    [Fact]
    public void A_rate_meets_its_share_of_the_ceiling_only_at_or_above_it()
    {
        var at = new Ceiling(Platform: 60, Raw: 100).AtLeast("rate", 0.6, Plain);
        var below = new Ceiling(Platform: 59, Raw: 100).AtLeast("rate", 0.6, Plain);

        Assert.True(at.Met);
        Assert.False(below.Met);
        Assert.Equal("60 / raw 100 = 0.60", at.Value);
        Assert.Equal("≥ 0.6 × raw", at.Target);
    }

    [Fact]
    public void A_latency_meets_its_multiple_of_the_ceiling_only_at_or_below_it()
    {
        Assert.True(new Ceiling(Platform: 2.5, Raw: 2).AtMost("p99", 1.25, Plain).Met);
        Assert.False(new Ceiling(Platform: 2.6, Raw: 2).AtMost("p99", 1.25, Plain).Met);
    }

    [Theory]
    [InlineData(100, 0)]
    [InlineData(100, double.NaN)]
    [InlineData(double.NaN, 100)]
    [InlineData(100, double.PositiveInfinity)]
    public void A_missing_or_zero_ceiling_never_passes_either_way(double platform, double raw)
    {
        var ceiling = new Ceiling(platform, raw);

        Assert.True(double.IsNaN(ceiling.Ratio));
        Assert.False(ceiling.AtLeast("rate", 0.6, Plain).Met);
        Assert.False(ceiling.AtMost("p99", 1.25, Plain).Met);
        Assert.EndsWith("= n/a", ceiling.AtLeast("rate", 0.6, Plain).Value, StringComparison.Ordinal);
    }

    [Fact]
    public void The_report_replaces_its_own_section_of_the_document_and_leaves_the_prose_alone()
    {
        var document = $"# Benchmarks\n\nprose before\n\n{BenchmarksDoc.Start}\nold table\n{BenchmarksDoc.End}\n\nprose after\n";

        var once = BenchmarksDoc.WithReport(document, "new table\n");
        var twice = BenchmarksDoc.WithReport(once, "newer table");

        Assert.Equal($"# Benchmarks\n\nprose before\n\n{BenchmarksDoc.Start}\nnew table\n{BenchmarksDoc.End}\n\nprose after\n", once);
        Assert.DoesNotContain("new table", twice, StringComparison.Ordinal);
        Assert.Contains("newer table", twice, StringComparison.Ordinal);
        Assert.EndsWith("prose after\n", twice, StringComparison.Ordinal);
    }

    [Fact]
    public void A_document_without_the_section_gets_it_at_the_end()
    {
        var written = BenchmarksDoc.WithReport("# Benchmarks\n\nprose\n", "table");

        Assert.Equal($"# Benchmarks\n\nprose\n\n{BenchmarksDoc.Start}\ntable\n{BenchmarksDoc.End}\n", written);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(312)]
    [InlineData(4096)]
    public void The_bare_answer_has_exactly_the_platform_answers_size_and_is_json(int bytes)
    {
        var body = BareAdmission.Body(bytes);

        Assert.Equal(bytes, body.Length);
        using var json = System.Text.Json.JsonDocument.Parse(body);
        Assert.Equal(System.Text.Json.JsonValueKind.Object, json.RootElement.ValueKind);
    }

    [Fact]
    public async Task The_open_loop_generator_reports_a_servers_added_delay()
    {
        // The same bare server twice, once holding every answer 50 ms: the generator must see at least that. Lower bounds
        // only: on a loaded machine the undelayed run's own latency can exceed 50 ms (it did, while other builds ran), so
        // the ratio of the two is no test; the ratio arithmetic has tests of its own above.
        var delay = TimeSpan.FromMilliseconds(50);
        var plan = new LoadPlan(Rate: 200, Warmup: TimeSpan.FromSeconds(0.5), Duration: TimeSpan.FromSeconds(1.5), Connections: 32, Call: AdmissionCall.Check);

        var bare = await LatenciesAsync(plan, TimeSpan.Zero);
        var delayed = await LatenciesAsync(plan, delay);

        Assert.Equal(plan.MeasuredRequests, bare.OkLatencyMs.Count);
        Assert.Equal(plan.MeasuredRequests, delayed.OkLatencyMs.Count);
        // Task.Delay's timer may fire a tick (a few ms) early: the floor is the delay less that.
        var floor = delay.TotalMilliseconds - 5;
        Assert.True(delayed.OkLatencyMs[0] >= floor, $"fastest delayed answer {delayed.OkLatencyMs[0]} ms");
        Assert.True(Percentiles.Of(delayed.OkLatencyMs, 50) >= floor);
    }

    static async Task<LoadResult> LatenciesAsync(LoadPlan plan, TimeSpan delay)
    {
        var address = new Uri($"http://127.0.0.1:{FreePort()}");
        await using var server = BareAdmission.Build(address.ToString().TrimEnd('/'), 300, delay);
        await server.StartAsync();
        using var load = new OpenLoopLoad(plan, address, "key", ["deployment-a", "deployment-b"]);
        load.Prime(TimeSpan.FromMilliseconds(200));
        Assert.True(await Task.Run(() => load.Run(TimeSpan.FromSeconds(5), CancellationToken.None)));
        await server.StopAsync();
        return load.Measured();
    }

    static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
