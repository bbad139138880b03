namespace Throughput.Configuration;

/// <summary>
/// What this host process does (<c>Host:Roles</c>, comma-separated; default all): <c>Api</c> serves HTTP,
/// <c>Metering</c> consumes the partition queues, <c>Daemon</c> competes for the projection daemon's leadership.
/// One process can do everything; at scale each role gets its own replicas.
/// </summary>
public sealed record HostRoles(bool Api, bool Metering, bool Daemon)
{
    public static HostRoles FromConfiguration(IConfiguration configuration)
    {
        var text = configuration["Host:Roles"];
        if (string.IsNullOrWhiteSpace(text)) return new HostRoles(true, true, true);
        var roles = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var unknown = roles.Except(["Api", "Metering", "Daemon"], StringComparer.OrdinalIgnoreCase).ToList();
        if (unknown.Count > 0) throw new InvalidOperationException($"Host:Roles has unknown roles: {string.Join(", ", unknown)} (known: Api, Metering, Daemon)");
        bool Has(string role) => roles.Contains(role, StringComparer.OrdinalIgnoreCase);
        return new HostRoles(Has("Api"), Has("Metering"), Has("Daemon"));
    }
}
