using System.Threading.RateLimiting;
using Throughput.Access;

namespace Throughput.Tests;

/// <summary>The budget of unknown key ids an address may have looked up, and the partitioned limiters' race with their cleanup of idle buckets.</summary>
public sealed class UnknownKeyLookupsTests
{
    [Fact]
    public void An_address_that_used_up_its_budget_is_refused_and_another_is_not()
    {
        using var lookups = new UnknownKeyLookups();

        var granted = Enumerable.Range(0, 100).Count(_ => { using var lease = lookups.Budget.AttemptAcquire("10.0.0.1", permitCount: 1); return lease.IsAcquired; });

        Assert.Equal(40, granted);
        using var probe = lookups.Budget.AttemptAcquire("10.0.0.1", permitCount: 0);
        Assert.False(probe.IsAcquired);
        using var other = lookups.Budget.AttemptAcquire("10.0.0.2", permitCount: 0);
        Assert.True(other.IsAcquired);
    }

    [Fact]
    public void A_bucket_disposed_under_an_acquire_is_tried_again_not_thrown()
    {
        var disposedOnce = new DisposedOnce();
        using var budget = new DisposedPartitionRetry<string>(disposedOnce);

        using var lease = budget.AttemptAcquire("10.0.0.1", permitCount: 0);

        Assert.True(lease.IsAcquired);
        Assert.Equal(2, disposedOnce.Attempts);
    }

    /// <summary>The limiter as the race leaves it: its first acquire finds the address's bucket disposed, the next a new one.</summary>
    sealed class DisposedOnce : PartitionedRateLimiter<string>
    {
        readonly ConcurrencyLimiter _fresh = new(new ConcurrencyLimiterOptions { PermitLimit = 1, QueueLimit = 0 });

        public int Attempts { get; private set; }

        protected override RateLimitLease AttemptAcquireCore(string resource, int permitCount) =>
            ++Attempts == 1 ? throw new ObjectDisposedException(nameof(TokenBucketRateLimiter)) : _fresh.AttemptAcquire(permitCount);

        protected override ValueTask<RateLimitLease> AcquireAsyncCore(string resource, int permitCount, CancellationToken cancellationToken) =>
            ValueTask.FromResult(AttemptAcquireCore(resource, permitCount));

        public override RateLimiterStatistics? GetStatistics(string resource) => null;

        protected override void Dispose(bool disposing)
        {
            _fresh.Dispose();
            base.Dispose(disposing);
        }
    }
}
