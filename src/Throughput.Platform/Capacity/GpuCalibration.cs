using Throughput.Http;

namespace Throughput.Capacity;

/// <summary>
/// What one GPU of a kind was measured to serve of a model: its weighted tokens per minute in full, and those in the
/// model's PTUs. Recorded by the reference batcher's calibration command; the last one recorded is the one pools use.
/// </summary>
public sealed record GpuCalibrated(string CalibrationId, string GpuKind, string Model, decimal PtuPerGpu, long WeightedTokensPerMinute, string Scheduler, int TokenBudget, DateTimeOffset At);

/// <summary>The latest calibration of a GPU kind for a model.</summary>
/// <param name="Id">The calibration's id, gpu:{gpuKind}:{model}.</param>
/// <param name="GpuKind">The GPU kind measured, e.g. A100-80GB.</param>
/// <param name="Model">The model it was measured serving.</param>
/// <param name="PtuPerGpu">The PTUs one GPU of the kind can sell for the model.</param>
/// <param name="WeightedTokensPerMinute">The weighted tokens per minute one GPU served at saturation.</param>
/// <param name="Scheduler">The batcher's scheduler that was measured (e.g. Flywheel).</param>
/// <param name="TokenBudget">The scheduler's tokens per iteration during the measurement.</param>
/// <param name="CalibratedAt">When it was recorded.</param>
/// <param name="Version">Its stream version.</param>
public sealed record GpuCalibration(string Id, string GpuKind, string Model, decimal PtuPerGpu, long WeightedTokensPerMinute, string Scheduler, int TokenBudget, DateTimeOffset CalibratedAt, long Version)
{
    public static string StreamId(string gpuKind, string model) => $"gpu:{gpuKind}:{model}";

    public static GpuCalibration Create(GpuCalibrated e) =>
        new(e.CalibrationId, e.GpuKind, e.Model, e.PtuPerGpu, e.WeightedTokensPerMinute, e.Scheduler, e.TokenBudget, e.At, 0);

    public GpuCalibration Apply(GpuCalibrated e) => Create(e) with { Version = Version };

    /// <summary>Recording the figures it already holds changes nothing; a PTU per GPU needs a positive figure.</summary>
    public static GpuCalibrated[] Record(GpuCalibration? current, string gpuKind, string model, decimal ptuPerGpu, long weightedTokensPerMinute, string scheduler, int tokenBudget, DateTimeOffset now)
    {
        if (ptuPerGpu <= 0) throw RuleViolation.Unprocessable("A GPU must be worth more than 0 PTU.");
        if (current is not null && current.PtuPerGpu == ptuPerGpu && current.WeightedTokensPerMinute == weightedTokensPerMinute
            && current.Scheduler == scheduler && current.TokenBudget == tokenBudget) return [];
        return [new GpuCalibrated(StreamId(gpuKind, model), gpuKind, model, ptuPerGpu, weightedTokensPerMinute, scheduler, tokenBudget, now)];
    }
}
