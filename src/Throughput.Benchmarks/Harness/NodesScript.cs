using System.Diagnostics;

namespace Throughput.Benchmarks.Harness;

/// <summary>Runs infra/drills/nodes.sh (the drills' scratch PostgreSQL clusters and RabbitMQ nodes) and returns what it printed.</summary>
public static class NodesScript
{
    /// <summary>Fails with the script's output when it exits non-zero; kills it if it outlasts <paramref name="timeout"/> (none: no limit).</summary>
    public static async Task<string> RunAsync(string script, IReadOnlyList<string> arguments, TimeSpan? timeout, CancellationToken ct)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(script);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not run {script}");
        var output = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var errors = process.StandardError.ReadToEndAsync(CancellationToken.None);
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (timeout is { } limit) patience.CancelAfter(limit);
        try
        {
            await process.WaitForExitAsync(patience.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} {string.Join(' ', arguments.Take(2))} took over {timeout!.Value.TotalMinutes:0} minutes");
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{script} {string.Join(' ', arguments.Take(2))} exited with {process.ExitCode}: {(await errors).Trim()} {(await output).Trim()}");
        return await output;
    }
}
