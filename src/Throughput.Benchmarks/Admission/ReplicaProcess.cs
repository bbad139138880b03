using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Throughput.Contracts;
using Throughput.Serving;

namespace Throughput.Benchmarks.Admission;

/// <summary>What one replica process is told at start (its first line on stdin), registered for it by the benchmark.</summary>
public sealed record ReplicaSpec(Uri Platform, string Key, Uri Broker, string Producer, string Region, string Model, string Deployment,
    string MeteringExchange, double OfferedPerSecond, int Tokens, double BacklogSeconds, bool Leases, int Bins);

/// <summary>What a replica process admitted: tokens per 1 s bin from the common start, in all, and metering records published.</summary>
public sealed record ReplicaResult(long[] Bins, long AdmittedTokens, long Records);

/// <summary>
/// One serving process of the replicas benchmark: this dll run with <see cref="Command"/>, its own runtime with its own
/// AdmissionCache, AdmissionFeed, MeteringPublisher and HTTP client. It talks to the benchmark in lines: it says
/// <c>ready</c>, then <c>lease {tokens/min} {demand the platform holds for it} {backlogged 0/1}</c> whenever one of them
/// changes, and <c>done {result}</c> at the end; it is told
/// <c>go {unix ms}</c> (serve, binning from that instant), <c>stop</c> (flush, give the leases back, exit) or <c>kill</c>
/// (as a crash: no renewal and no release from then on; what it admitted is still flushed, so metering can be compared).
/// </summary>
public sealed class ReplicaProcess : IAsyncDisposable
{
    public const string Command = "replica";

    /// <summary>How soon the share a replica stops using is to move to the others (#17: within ~2 s).</summary>
    public static readonly TimeSpan Moves = TimeSpan.FromSeconds(2);

    readonly Process _process;
    readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly TaskCompletionSource<ReplicaResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly Task _reading;
    long _lease = -1;
    long _demand;
    int _backlogged;

    ReplicaProcess(Process process)
    {
        _process = process;
        _reading = Task.Run(ReadAsync);
    }

    /// <summary>The tokens per minute of its lease as it last said (-1 before the first).</summary>
    public long Lease => Interlocked.Read(ref _lease);

    /// <summary>The demand (tokens/min) the platform recorded for it when it handed out that lease.</summary>
    public long Demand => Interlocked.Read(ref _demand);

    /// <summary>
    /// Whether its queue held a request it could not admit within the last <see cref="Moves"/>, as it last said: it would take
    /// any share, or did so recently enough that the share it no longer uses may not have moved yet.
    /// </summary>
    public bool Backlogged => Volatile.Read(ref _backlogged) == 1;

    public static async Task<ReplicaProcess> StartAsync(ReplicaSpec spec, CancellationToken ct)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(typeof(ReplicaProcess).Assembly.Location);
        start.ArgumentList.Add(Command);
        var replica = new ReplicaProcess(Process.Start(start) ?? throw new InvalidOperationException("replica process did not start"));
        await replica.SayAsync(JsonSerializer.Serialize(spec));
        await replica._ready.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        return replica;
    }

    public Task GoAsync(long startUnixMs) => SayAsync($"go {startUnixMs}");

    public async Task<ReplicaResult> StopAsync(bool kill = false)
    {
        await SayAsync(kill ? "kill" : "stop");
        var result = await _done.Task.WaitAsync(TimeSpan.FromSeconds(60));
        await _process.WaitForExitAsync();
        return result;
    }

    async Task SayAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    async Task ReadAsync()
    {
        while (await _process.StandardOutput.ReadLineAsync() is { } line)
        {
            if (line == "ready") _ready.TrySetResult();
            else if (line.StartsWith("lease ", StringComparison.Ordinal))
            {
                var said = line[6..].Split(' ');
                Interlocked.Exchange(ref _lease, long.Parse(said[0], CultureInfo.InvariantCulture));
                Interlocked.Exchange(ref _demand, long.Parse(said[1], CultureInfo.InvariantCulture));
                Volatile.Write(ref _backlogged, said[2] == "1" ? 1 : 0);
            }
            else if (line.StartsWith("done ", StringComparison.Ordinal)) _done.TrySetResult(JsonSerializer.Deserialize<ReplicaResult>(line[5..])!);
            else Console.WriteLine(line);
        }
        var exited = new InvalidOperationException($"replica process exited ({(_process.HasExited ? _process.ExitCode : -1)})");
        _ready.TrySetException(exited);
        _done.TrySetException(exited);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        await _reading;
        _process.Dispose();
    }

    /// <summary>The child: serves as told on stdin until <c>stop</c> or <c>kill</c>.</summary>
    public static async Task<int> RunAsync()
    {
        var spec = JsonSerializer.Deserialize<ReplicaSpec>(await Console.In.ReadLineAsync() ?? "")!;
        var platform = new HttpClient { BaseAddress = spec.Platform, DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", spec.Key) } };
        var cache = new AdmissionCache(new AdmissionCacheOptions { Leases = spec.Leases });
        var feed = await AdmissionFeed.StartAsync(cache, platform, new AdmissionFeedOptions(spec.Broker) { Region = spec.Region, Model = spec.Model });
        var publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(spec.Broker, spec.Producer) { Exchange = spec.MeteringExchange });
        var deadline = Stopwatch.GetTimestamp() + 10 * Stopwatch.Frequency;
        while (cache.Limit(spec.Deployment) is null)
        {
            if (Stopwatch.GetTimestamp() > deadline) throw new InvalidOperationException($"{spec.Producer}: no limit for {spec.Deployment} after 10 s");
            await feed.PullAsync([spec.Deployment]);
            await Task.Delay(100);
        }
        Console.WriteLine("ready");

        using var stopping = new CancellationTokenSource();
        var refusedAt = new StrongBox<long>(long.MinValue / 2);
        var watching = Task.Run(async () =>
        {
            var said = "";
            while (!stopping.IsCancellationRequested)
            {
                var held = cache.Lease(spec.Deployment);
                var lease = held?.TokensPerMinute ?? (spec.Leases ? 0 : cache.Limit(spec.Deployment)!.TokensPerMinute);
                var backlogged = Stopwatch.GetElapsedTime(Volatile.Read(ref refusedAt.Value)) < Moves ? 1 : 0;
                var state = $"{lease} {held?.DemandTokensPerMinute ?? 0} {backlogged}";
                if (state != said) Console.WriteLine($"lease {said = state}");
                await Task.Delay(10);
            }
        });
        var bins = new long[spec.Bins];
        long admitted = 0, records = 0;
        var serving = Task.CompletedTask;
        string? last;
        while ((last = await Console.In.ReadLineAsync()) is { } line && line.StartsWith("go ", StringComparison.Ordinal))
        {
            var startMs = long.Parse(line[3..], CultureInfo.InvariantCulture);
            serving = Task.Run(async () =>
            {
                // Requests arrive at the offered rate into a queue served whenever the cache admits.
                var queued = spec.BacklogSeconds * spec.OfferedPerSecond / spec.Tokens;
                var at = Stopwatch.GetTimestamp();
                while (!stopping.IsCancellationRequested)
                {
                    var now = Stopwatch.GetTimestamp();
                    queued += Stopwatch.GetElapsedTime(at, now).TotalSeconds * spec.OfferedPerSecond / spec.Tokens;
                    at = now;
                    while (queued >= 1 && !stopping.IsCancellationRequested)
                    {
                        var admission = cache.TryAdmit(spec.Deployment, spec.Tokens, 0, 0);
                        if (!admission.IsAdmitted)
                        {
                            Volatile.Write(ref refusedAt.Value, Stopwatch.GetTimestamp());
                            break;
                        }
                        queued--;
                        var when = DateTimeOffset.UtcNow;
                        var id = $"{spec.Producer}-{++records}";
                        await publisher.RecordAsync(new MeteringRecord(id, spec.Deployment, id, spec.Tokens, 0, 0, false, admission.EstimatedTokens, when, when), CancellationToken.None);
                        cache.Complete(admission, spec.Tokens, 0, 0);
                        admitted += spec.Tokens;
                        var bin = (when.ToUnixTimeMilliseconds() - startMs) / 1000;
                        if (bin >= 0 && bin < bins.Length) bins[bin] += spec.Tokens;
                    }
                    await Task.Delay(10, CancellationToken.None);
                }
            });
        }
        if (last == "kill") platform.Dispose(); // a crash: neither renewal nor release gets through from now on
        await stopping.CancelAsync();
        await serving;
        await watching;
        await publisher.DisposeAsync(); // flushes what was admitted, so metering can be compared
        await feed.DisposeAsync();
        platform.Dispose();
        Console.WriteLine($"done {JsonSerializer.Serialize(new ReplicaResult(bins, admitted, records))}");
        return 0;
    }
}
