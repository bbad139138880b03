namespace Throughput.IntegrationTests;

static class Eventually
{
    /// <summary>Polls until the probe returns a value that satisfies the condition, or fails with the last value seen.</summary>
    public static async Task<T> Until<T>(Func<Task<T>> probe, Func<T, bool> condition, TimeSpan? timeout = null, TimeSpan? every = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        T last = await probe();
        while (!condition(last))
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"Condition not met in time; last value: {last}");
            await Task.Delay(every ?? TimeSpan.FromMilliseconds(100));
            last = await probe();
        }
        return last;
    }
}
