using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;

namespace Throughput.Access;

/// <summary>Limits per API key and per request body, so one noisy or hostile client cannot starve the others.</summary>
public sealed class RequestLimitOptions
{
    /// <summary>Sustained requests per second per key for people and their scripts (tenants, finance, operators).</summary>
    public int PerKeyPerSecond { get; set; } = 50;

    /// <summary>Requests a key may send at once above its rate.</summary>
    public int PerKeyBurst { get; set; } = 100;

    /// <summary>Serving nodes query admission on the hot path: a far higher budget.</summary>
    public int ServingNodePerSecond { get; set; } = 20_000;

    /// <summary>Requests per second from one client address without a valid key (refused keys included), with as much again as burst.</summary>
    public int AnonymousPerSecond { get; set; } = 50;

    public long MaxBodyBytes { get; set; } = 1 << 20;
}

public static class RequestLimits
{
    public static IServiceCollection AddRequestLimits(this IServiceCollection services, IConfiguration configuration)
    {
        var options = configuration.GetSection("RequestLimits").Get<RequestLimitOptions>() ?? new RequestLimitOptions();
        services.AddSingleton(options);
        services.AddRateLimiter(limiter =>
        {
            limiter.GlobalLimiter = new DisposedPartitionRetry<HttpContext>(PartitionedRateLimiter.Create<HttpContext, string>(http =>
            {
                if (http.User.Identity?.IsAuthenticated != true && http.Request.Path.StartsWithSegments("/health"))
                    return RateLimitPartition.GetNoLimiter("health"); // probes: orchestrators and load balancers poll them
                if (http.User.Identity?.IsAuthenticated != true)
                    return RateLimitPartition.GetTokenBucketLimiter("address:" + http.Connection.RemoteIpAddress, _ => new TokenBucketRateLimiterOptions
                    {
                        TokenLimit = options.AnonymousPerSecond * 2,
                        TokensPerPeriod = options.AnonymousPerSecond,
                        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                        QueueLimit = 0,
                        AutoReplenishment = true,
                    });
                var key = http.User.KeyId();
                var perSecond = http.User.IsInRole(nameof(Role.ServingNode)) ? options.ServingNodePerSecond : options.PerKeyPerSecond;
                var burst = http.User.IsInRole(nameof(Role.ServingNode)) ? options.ServingNodePerSecond : options.PerKeyBurst;
                return RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = burst,
                    TokensPerPeriod = perSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                });
            }));
            limiter.OnRejected = async (context, ct) =>
            {
                var retryAfter = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromSeconds(1);
                context.HttpContext.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
                await TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "Too many requests",
                    detail: context.HttpContext.User.Identity?.IsAuthenticated == true
                        ? "This API key sent more requests than its rate allows; retry after the Retry-After seconds."
                        : "This address sent more requests without a valid API key than allowed; retry after the Retry-After seconds.").ExecuteAsync(context.HttpContext);
            };
        });
        return services;
    }

    /// <summary>Refuses bodies over the limit before anything reads them (413 problem details).</summary>
    public static WebApplication UseRequestLimits(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<RequestLimitOptions>();
        app.Use(async (http, next) =>
        {
            if (http.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
                size.MaxRequestBodySize = options.MaxBodyBytes;
            if (http.Request.ContentLength > options.MaxBodyBytes)
            {
                await TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "Request body too large",
                    detail: $"Request bodies are limited to {options.MaxBodyBytes} bytes.").ExecuteAsync(http);
                return;
            }
            await next(http);
        });
        return app;
    }
}
