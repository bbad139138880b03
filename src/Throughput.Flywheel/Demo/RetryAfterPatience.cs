namespace Throughput.Flywheel.Demo;

/// <summary>
/// Waits out a 429 for its Retry-After and sends again, as a well-behaved client does: an API key's budget is shared by
/// everyone using it (the operator's key sets up the demo, and every integration test), and setup comes in bursts.
/// </summary>
public sealed class RetryAfterPatience : DelegatingHandler
{
    const int Attempts = 10;

    public RetryAfterPatience()
    {
    }

    public RetryAfterPatience(HttpMessageHandler inner) : base(inner)
    {
    }

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var response = await base.SendAsync(request, cancellationToken);
            if (response.StatusCode != System.Net.HttpStatusCode.TooManyRequests || attempt == Attempts) return response;
            await Task.Delay(response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1), cancellationToken);
            response.Dispose();
        }
    }
}
