using System.Diagnostics;

namespace Throughput.IntegrationTests.Serving;

/// <summary>The broker's own tools, for what a client cannot do to itself.</summary>
internal static class Broker
{
    /// <summary>The broker's id of exactly the connection with this client-provided name.</summary>
    public static async Task<string> FindConnectionAsync(string connectionName)
    {
        var listing = await RabbitmqctlAsync("-q", "list_connections", "--no-table-headers", "pid", "client_properties");
        var marker = $"{{\"connection_name\",\"{connectionName}\"}}";
        var matches = listing.Split('\n').Where(line => line.Contains(marker, StringComparison.Ordinal)).ToArray();
        Assert.True(matches.Length == 1, $"expected one connection named {connectionName}, found {matches.Length} in:\n{listing}");
        var pid = matches[0][..matches[0].IndexOf('\t', StringComparison.Ordinal)].Trim();
        Assert.StartsWith("<", pid);
        return pid;
    }

    /// <summary>Closes that one connection, as a broker failover or a network cut would; other connections are left alone.</summary>
    public static async Task CloseConnectionAsync(string pid) =>
        await RabbitmqctlAsync("close_connection", pid, "throughput sdk test: simulated broker loss");

    static async Task<string> RabbitmqctlAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("rabbitmqctl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"rabbitmqctl {string.Join(' ', arguments)} failed: {await error}");
        return await output;
    }
}
