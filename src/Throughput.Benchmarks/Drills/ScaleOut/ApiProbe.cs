using System.Text.Json;
using Throughput.Benchmarks.Harness;
using Throughput.Benchmarks.Metering;

namespace Throughput.Benchmarks.Drills.ScaleOut;

/// <summary>One API instance as the probe asks it: the customer API with the tenant's key, the admission pull API with an operator key.</summary>
public sealed class ApiInstance(string name, int processId, PlatformApi tenant, PlatformApi operatorApi) : IDisposable
{
    long _usageAnswers;
    long _admissionAnswers;
    long _failures;

    public string Name => name;

    public int ProcessId => processId;

    public PlatformApi Tenant => tenant;

    public PlatformApi Operator => operatorApi;

    public long UsageAnswers => Interlocked.Read(ref _usageAnswers);

    public long AdmissionAnswers => Interlocked.Read(ref _admissionAnswers);

    public long Failures => Interlocked.Read(ref _failures);

    public string? LastFailure { get; private set; }

    internal void Answered(bool usage)
    {
        if (usage) Interlocked.Increment(ref _usageAnswers);
        else Interlocked.Increment(ref _admissionAnswers);
    }

    internal void Failed(Exception e)
    {
        Interlocked.Increment(ref _failures);
        LastFailure = e.Message;
    }

    public void Dispose()
    {
        tenant.Dispose();
        operatorApi.Dispose();
    }
}

/// <summary>
/// Asks every API instance, about twice a second for the whole run, for a deployment's usage totals (customer API) and the
/// region's admission limits (pull API, which must list every deployment), so the report shows each instance answering
/// while hosts and broker nodes die.
/// </summary>
public sealed class ApiProbe : IAsyncDisposable
{
    static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);

    readonly IReadOnlyList<ApiInstance> _instances;
    readonly MeteringFleet _fleet;
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;

    public ApiProbe(IReadOnlyList<ApiInstance> instances, MeteringFleet fleet)
    {
        _instances = instances;
        _fleet = fleet;
        _loop = Task.Run(LoopAsync);
    }

    async Task LoopAsync()
    {
        var path = $"/v1/admission?region={Uri.EscapeDataString(_fleet.Region)}&model={Uri.EscapeDataString(MeteringFleet.Model)}";
        using var timer = new PeriodicTimer(Interval);
        var round = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                var deployment = _fleet.Deployments[round++ % _fleet.Deployments.Count];
                foreach (var instance in _instances)
                {
                    await AskAsync(instance, true, async ct => (await instance.Tenant.GetAsync($"/v1/deployments/{deployment}/usage/totals", ct)).GetProperty("deploymentId").GetString() == deployment);
                    await AskAsync(instance, false, async ct => (await instance.Operator.GetAsync(path, ct)).GetArrayLength() == _fleet.Deployments.Count);
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    async Task AskAsync(ApiInstance instance, bool usage, Func<CancellationToken, Task<bool>> ask)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            if (await ask(timeout.Token)) instance.Answered(usage);
            else instance.Failed(new InvalidOperationException(usage ? "usage totals of another deployment" : "admission limits missing deployments"));
        }
        catch (Exception e) when (e is HttpRequestException or InvalidOperationException or JsonException
                                      || (e is OperationCanceledException && !_stop.IsCancellationRequested))
        {
            instance.Failed(e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}
