using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using Throughput.Configuration;

namespace Throughput.Hosting;

public static class Health
{
    public static IServiceCollection AddThroughputHealth(this IServiceCollection services, ServiceSettings settings)
    {
        // MassTransit registers its bus check with the "ready" tag itself.
        services.AddHealthChecks().AddCheck("postgresql", new PostgresReachable(settings.PostgresConnectionString()), tags: ["ready"]);
        return services;
    }

    public static IEndpointRouteBuilder MapThroughputHealth(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous();
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") }).AllowAnonymous();
        return app;
    }

    sealed class PostgresReachable(string connectionString) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                await using var connection = new NpgsqlConnection(connectionString);
                await connection.OpenAsync(cancellationToken);
                await using var command = new NpgsqlCommand("select 1", connection);
                await command.ExecuteScalarAsync(cancellationToken);
                return HealthCheckResult.Healthy();
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
            {
                return HealthCheckResult.Unhealthy("PostgreSQL unreachable", e);
            }
        }
    }
}
