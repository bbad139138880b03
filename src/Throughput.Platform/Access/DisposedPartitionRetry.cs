using System.Threading.RateLimiting;

namespace Throughput.Access;

/// <summary>
/// A partitioned limiter whose acquires are tried once more when they met a partition's limiter being disposed. .NET's
/// partitioned limiter disposes a partition's bucket once it has stayed idle for 10 s, and an acquire that already holds
/// the bucket can race that (dotnet/runtime#99865): a 500 on a valid key, seen once in 100,000 onboardings. The bucket
/// has left the limiter's table by the time it is disposed, so the second attempt gets a new one.
/// </summary>
public sealed class DisposedPartitionRetry<TResource>(PartitionedRateLimiter<TResource> limiter) : PartitionedRateLimiter<TResource>
{
    protected override RateLimitLease AttemptAcquireCore(TResource resource, int permitCount)
    {
        try
        {
            return limiter.AttemptAcquire(resource, permitCount);
        }
        catch (ObjectDisposedException)
        {
            return limiter.AttemptAcquire(resource, permitCount);
        }
    }

    protected override async ValueTask<RateLimitLease> AcquireAsyncCore(TResource resource, int permitCount, CancellationToken cancellationToken)
    {
        try
        {
            return await limiter.AcquireAsync(resource, permitCount, cancellationToken);
        }
        catch (ObjectDisposedException)
        {
            return await limiter.AcquireAsync(resource, permitCount, cancellationToken);
        }
    }

    public override RateLimiterStatistics? GetStatistics(TResource resource) => limiter.GetStatistics(resource);

    protected override void Dispose(bool disposing)
    {
        if (disposing) limiter.Dispose();
        base.Dispose(disposing);
    }

    protected override async ValueTask DisposeAsyncCore()
    {
        await limiter.DisposeAsync();
        await base.DisposeAsyncCore();
    }
}
