namespace Throughput.Flywheel.Batching;

/// <summary>A clock the simulation moves by hand, so a run of minutes takes milliseconds and repeats exactly.</summary>
public sealed class SimulatedClock(DateTimeOffset start) : TimeProvider
{
    DateTimeOffset _now = start;

    public override DateTimeOffset GetUtcNow() => _now;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _now.UtcTicks;

    public void Advance(TimeSpan by) => _now += by;
}
