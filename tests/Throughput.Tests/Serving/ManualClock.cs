namespace Throughput.Tests.Serving;

/// <summary>A clock that moves only when told, for linger decisions.</summary>
sealed class ManualClock : TimeProvider
{
    readonly DateTimeOffset _start = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);
    long _elapsedTicks;

    public override DateTimeOffset GetUtcNow() => _start.AddTicks(_elapsedTicks);

    public override long GetTimestamp() => _elapsedTicks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public void Advance(TimeSpan by) => _elapsedTicks += by.Ticks;
}
