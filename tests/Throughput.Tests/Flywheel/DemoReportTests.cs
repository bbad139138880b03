using System.Xml.Linq;
using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Demo;
using Throughput.Flywheel.Report;
using Throughput.Serving;

namespace Throughput.Tests.Flywheel;

public sealed class DemoReportTests
{
    static readonly DateTimeOffset T0 = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void The_command_line_shortens_the_run_and_keeps_the_platform_url_first()
    {
        var options = DemoOptions.Parse(["http://127.0.0.1:5999", "--minutes", "1.5", "--window", "10s", "--output-scale", "0.25", "--budget", "512"]);

        Assert.Equal(new Uri("http://127.0.0.1:5999"), options.Platform);
        Assert.Equal(TimeSpan.FromSeconds(90), options.Scenario.Duration);
        Assert.Equal(TimeSpan.FromSeconds(10), options.Scenario.Window);
        Assert.Equal(TimeSpan.FromSeconds(50), options.Scenario.EffectiveResizeAt); // the window boundary nearest the middle
        Assert.Equal(0.25, options.Scenario.OutputScale);
        Assert.Equal(512, options.Fleet.TokenBudget);
        Assert.True(options.Fleet.MaxSequencesPerNode < options.Fleet.TokenBudget);
    }

    [Fact]
    public void By_default_the_run_takes_five_minutes_in_one_minute_windows_and_raises_at_three()
    {
        var options = DemoOptions.Parse([]);

        Assert.Equal(TimeSpan.FromMinutes(5), options.Scenario.Duration);
        Assert.Equal(TimeSpan.FromMinutes(1), options.Scenario.Window);
        Assert.Equal(TimeSpan.FromMinutes(3), options.Scenario.EffectiveResizeAt);
        Assert.Single(options.Scenario.Customers, c => c.RaisedShare is not null);
        Assert.Equal(0.90, options.Scenario.Customers.Sum(c => c.CapacityShare ?? 0), 3); // the fleet sold to 90 %, 95 % after the raise
        Assert.Equal(0.95, options.Scenario.Customers.Sum(c => c.RaisedShare ?? c.CapacityShare ?? 0), 3);
    }

    [Theory]
    [InlineData("--window", "0s")]
    [InlineData("--minutes", "-1")]
    [InlineData("--nodes", "x")]
    [InlineData("--bogus", "1")]
    public void A_bad_option_is_refused(string option, string value) =>
        Assert.ThrowsAny<FormatException>(() => DemoOptions.Parse([option, value]));

    [Fact]
    public void Purchased_tokens_follow_the_rate_in_effect_across_a_change()
    {
        var tally = new Tally(T0, TimeSpan.FromSeconds(1));
        var track = tally.Follow("dep", "c", 4, 1);
        track.Limit(T0, 60_000, AdmissionState.Open);
        track.Limit(T0.AddSeconds(30), 120_000, AdmissionState.Open);

        Assert.Equal(30_000 + 60_000, track.PurchasedBetween(T0, T0.AddMinutes(1)), precision: 6);
        Assert.Equal(120_000, track.RateAt(T0.AddSeconds(45)));
    }

    [Fact]
    public void A_throttle_counts_once_when_the_state_turns_throttled()
    {
        var tally = new Tally(T0, TimeSpan.FromSeconds(1));
        var track = tally.Follow("dep", "c", 4, 1);
        track.Limit(T0, 60_000, AdmissionState.Open);
        track.Limit(T0.AddSeconds(2), 60_000, AdmissionState.Throttled);
        track.Limit(T0.AddSeconds(3), 60_000, AdmissionState.Throttled);
        track.Limit(T0.AddSeconds(4), 60_000, AdmissionState.Open);

        Assert.Equal(1, track.Sum(T0, T0.AddSeconds(10)).Throttles);
    }

    [Fact]
    public void Served_tokens_are_weighted_as_the_platform_weighs_them()
    {
        var tally = new Tally(T0, TimeSpan.FromSeconds(1));
        tally.Follow("dep", "c", outputWeight: 4, cachedDeduction: 1);

        tally.Record(Served(T0, new IterationPart("r1", "dep", 600, 200, 10)));

        var window = WindowReport.Row(tally, tally["dep"], 0, TimeSpan.FromSeconds(10));
        Assert.Equal(600 + 40, window.Weighted);
        Assert.Equal(800, window.Prompt);
    }

    [Fact]
    public void The_chart_is_a_self_contained_page_with_a_panel_per_customer_and_a_strip_of_iterations_per_fleet()
    {
        var tally = new Tally(T0, TimeSpan.FromSeconds(1)) { StripSpan = (T0, TimeSpan.FromSeconds(2)) };
        foreach (var name in new[] { "Docs <&>", "Chat" })
        {
            var track = tally.Follow(name, name, 4, 1);
            track.Limit(T0, 100_000, AdmissionState.Open);
        }
        for (var s = 0; s < 60; s++)
            tally.Record(Served(T0.AddSeconds(s), new IterationPart("c1", "Chat", 1_000, 0, 100), new IterationPart("d1", "Docs <&>", 10, 0, 300)));

        var html = Chart.Page("demo", [("Flywheel", tally)], T0.AddMinutes(1), TimeSpan.FromSeconds(5), T0.AddSeconds(30));

        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script", html, StringComparison.Ordinal);
        var svgs = Svgs(html);
        Assert.Equal(3, svgs.Count); // two customer panels, one strip
        Assert.All(svgs.Take(2), panel =>
        {
            Assert.Equal(2, panel.Elements().Count(e => e.Name.LocalName == "polygon")); // prompt and generated, stacked
            Assert.Single(panel.Elements(), e => e.Name.LocalName == "polyline"); // the purchased rate
        });
        Assert.Equal(4, svgs[2].Elements().Count(e => e.Name.LocalName == "rect")); // the two iterations in the strip's span, a block per request
        Assert.Contains("Docs &lt;&amp;&gt;", html, StringComparison.Ordinal);
    }

    static FleetStep Served(DateTimeOffset at, params IterationPart[] parts) =>
        new(at, [], [], [new NodeIteration(0, new Iteration(at, TimeSpan.FromMilliseconds(25), default, parts, []))], 1);

    static List<XElement> Svgs(string html)
    {
        var found = new List<XElement>();
        for (var at = html.IndexOf("<svg", StringComparison.Ordinal); at >= 0; at = html.IndexOf("<svg", at + 1, StringComparison.Ordinal))
            found.Add(XElement.Parse(html[at..(html.IndexOf("</svg>", at, StringComparison.Ordinal) + 6)]));
        return found;
    }
}
