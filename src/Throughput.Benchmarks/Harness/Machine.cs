using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Npgsql;
using RabbitMQ.Client;
using Throughput.Serving;

namespace Throughput.Benchmarks.Harness;

/// <summary>What the figures were measured on: they mean little without the machine, the runtime and the servers' versions.</summary>
public static class Machine
{
    public static async Task<IReadOnlyList<(string What, string Value)>> DescribeAsync(CancellationToken ct) =>
    [
        ("date (UTC)", DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)),
        ("CPU", $"{CpuModel()}, {Environment.ProcessorCount} cores"),
        ("memory", $"{MemoryGiB():0.0} GiB"),
        ("OS", $"{OsName()}, kernel {Environment.OSVersion.Version}"),
        (".NET", RuntimeInformation.FrameworkDescription),
        ("PostgreSQL", await PostgresVersionAsync(ct)),
        ("RabbitMQ", await RabbitVersionAsync(ct)),
    ];

    public static string Markdown(IReadOnlyList<(string What, string Value)> machine)
    {
        var md = new StringBuilder();
        md.AppendLine("| machine | |");
        md.AppendLine("|---|---|");
        foreach (var (what, value) in machine) md.AppendLine($"| {what} | {value} |");
        return md.ToString();
    }

    static string CpuModel() =>
        ProcField("/proc/cpuinfo", "model name", ':') ?? RuntimeInformation.ProcessArchitecture.ToString();

    static double MemoryGiB() =>
        ProcField("/proc/meminfo", "MemTotal", ':') is { } total && long.TryParse(total.Split(' ')[0], CultureInfo.InvariantCulture, out var kib)
            ? kib / 1024.0 / 1024.0
            : double.NaN;

    static string OsName() => ProcField("/etc/os-release", "PRETTY_NAME", '=')?.Trim('"') ?? RuntimeInformation.OSDescription;

    static string? ProcField(string path, string name, char separator)
    {
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
        {
            var at = line.IndexOf(separator, StringComparison.Ordinal);
            if (at > 0 && line[..at].Trim() == name) return line[(at + 1)..].Trim();
        }
        return null;
    }

    static async Task<string> PostgresVersionAsync(CancellationToken ct)
    {
        try
        {
            await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
            return (string?)await database.CreateCommand("show server_version").ExecuteScalarAsync(ct) ?? "?";
        }
        catch (NpgsqlException e)
        {
            return "unreachable: " + e.Message;
        }
    }

    static async Task<string> RabbitVersionAsync(CancellationToken ct)
    {
        try
        {
            await using var connection = await new ConnectionFactory { Uri = Services.PlatformBroker().Uri }.CreateConnectionAsync("throughput-bench-machine", ct);
            return connection.ServerProperties?.TryGetValue("version", out var version) == true && version is byte[] bytes ? Encoding.UTF8.GetString(bytes) : "?";
        }
        catch (RabbitMQ.Client.Exceptions.BrokerUnreachableException e)
        {
            return "unreachable: " + e.Message;
        }
    }
}
