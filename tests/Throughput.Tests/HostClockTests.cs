using Microsoft.Extensions.Configuration;
using Throughput.Hosting;

namespace Throughput.Tests;

public sealed class HostClockTests
{
    static TimeProvider ClockFrom(string? start) =>
        HostClock.FromConfiguration(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Clock:Start"] = start }).Build());

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void Without_Clock_Start_the_host_runs_on_the_system_clock(string? start) =>
        Assert.Same(TimeProvider.System, ClockFrom(start));

    [Theory]
    [InlineData("2030-01-31T23:59:30Z", "2030-01-31T23:59:30+00:00")]
    [InlineData("2030-01-31T23:59:30.250Z", "2030-01-31T23:59:30.25+00:00")]
    [InlineData("2030-02-01T01:59:30+02:00", "2030-01-31T23:59:30+00:00")]
    public void Clock_Start_is_where_the_clock_starts_and_it_runs_on_from_there(string setting, string expected)
    {
        var start = DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture);
        var clock = Assert.IsType<ShiftedClock>(ClockFrom(setting));
        Assert.Equal(start, clock.Start);
        var first = clock.GetUtcNow();
        Assert.InRange(first, start, start.AddMinutes(1));
        Assert.True(clock.GetUtcNow() >= first, "it runs forward");
        Assert.Equal(TimeSpan.Zero, first.Offset);
    }

    [Theory]
    [InlineData("2030-01-31T23:59:30")] // no offset: the machine's zone would decide
    [InlineData("2030-01-31")]
    [InlineData("end of January")]
    public void A_Clock_Start_that_is_not_an_instant_with_its_offset_stops_the_host(string setting)
    {
        var refused = Assert.Throws<InvalidOperationException>(() => ClockFrom(setting));
        Assert.Contains("Clock:Start", refused.Message);
    }
}
