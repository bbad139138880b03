using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Catalog;
using Throughput.Http;

namespace Throughput.Capacity;

/// <summary>A pool's capacity: in PTUs, or as GPUs of a calibrated kind (exactly one of the two).</summary>
/// <param name="CapacityPtu">The capacity in PTUs.</param>
/// <param name="Gpus">The capacity as this many GPUs of <paramref name="GpuKind"/>, converted with its calibration.</param>
/// <param name="GpuKind">A calibrated GPU kind, e.g. <c>A100-80GB</c>.</param>
public sealed record SetPoolCapacity(decimal? CapacityPtu, int? Gpus = null, string? GpuKind = null);

/// <param name="Phase">Whole, or the phase of a split region's pool (Prompt, Generation).</param>
/// <param name="Id">The pool's id, pool:{model}:{region}, with :{phase} in a split region.</param>
/// <param name="Model">The catalog model.</param>
/// <param name="Region">The region.</param>
/// <param name="CapacityPtu">The PTUs it can sell.</param>
/// <param name="SoldPtu">The PTUs of it deployments hold.</param>
/// <param name="FreePtu">Capacity less sold.</param>
/// <param name="Version">Its stream version.</param>
/// <param name="Gpus">The GPUs it is sized in; null when its capacity is set in PTUs.</param>
public sealed record PoolView(string Id, string Model, string Region, decimal CapacityPtu, decimal SoldPtu, decimal FreePtu, long Version, GpuSizing? Gpus, ServingPhase Phase)
{
    public static PoolView Of(CapacityPool p) => new(p.Id, p.Model, p.Region, p.Capacity, p.Sold, p.Free, p.Version, p.Gpus, p.Phase);
}

/// <summary>A calibration as the reference batcher's calibration command measured it.</summary>
/// <param name="PtuPerGpu">The PTUs one GPU of the kind can sell for the model.</param>
/// <param name="WeightedTokensPerMinute">The weighted tokens per minute one GPU served at saturation.</param>
/// <param name="Scheduler">The batcher's scheduler that was measured (e.g. Flywheel).</param>
/// <param name="TokenBudget">The scheduler's tokens per iteration during the measurement.</param>
public sealed record RecordCalibration(decimal PtuPerGpu, long WeightedTokensPerMinute, string Scheduler, int TokenBudget);

/// <summary>
/// Operator slices: see sold against available, record GPU calibrations. Stating a pool's capacity is Forge's
/// (<c>Forge/PoolCapacity.cs</c>), since raising a pool places degraded deployments again.
/// </summary>
public static class Pools
{
    public sealed class Validator : AbstractValidator<SetPoolCapacity>
    {
        public Validator()
        {
            RuleFor(x => x.CapacityPtu).NotNull().When(x => x.Gpus is null && x.GpuKind is null).WithMessage("State the capacity in PTUs (capacityPtu) or as GPUs (gpus and gpuKind).");
            RuleFor(x => x.CapacityPtu).Null().When(x => x.Gpus is not null || x.GpuKind is not null).WithMessage("State the capacity in PTUs or as GPUs, not both.");
            RuleFor(x => x.CapacityPtu).GreaterThanOrEqualTo(0).LessThanOrEqualTo(10_000_000).PrecisionScale(14, 4, ignoreTrailingZeros: true);
            RuleFor(x => x.Gpus).NotNull().When(x => x.GpuKind is not null).WithMessage("How many GPUs of that kind?");
            RuleFor(x => x.Gpus).InclusiveBetween(0, 1_000_000);
            RuleFor(x => x.GpuKind).NotEmpty().When(x => x.Gpus is not null).WithMessage("Which kind of GPU? GET /v1/operator/gpu-calibrations lists the calibrated ones.");
            RuleFor(x => x.GpuKind).Matches(GpuKindPattern).When(x => x.GpuKind is not null);
        }
    }

    public sealed class CalibrationValidator : AbstractValidator<RecordCalibration>
    {
        public CalibrationValidator()
        {
            RuleFor(x => x.PtuPerGpu).GreaterThan(0).LessThanOrEqualTo(100_000).PrecisionScale(14, 4, ignoreTrailingZeros: true);
            RuleFor(x => x.WeightedTokensPerMinute).GreaterThan(0);
            RuleFor(x => x.Scheduler).NotEmpty().MaximumLength(64);
            RuleFor(x => x.TokenBudget).GreaterThan(0);
        }
    }

    const string GpuKindPattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

    /// <summary>
    /// Checks a capacity statement for a pool of the model in the region, whole or by phase: the model is in the catalog,
    /// the region has a region's form, and a GPU kind has a calibration for the model (returned; null when stated in PTUs).
    /// </summary>
    public static async Task<(ProblemHttpResult? Problem, GpuCalibration? Calibration)> CheckAsync(ModelCatalog catalog, string model, string region, SetPoolCapacity command,
        IQuerySession session, CancellationToken ct)
    {
        if (catalog.Find(model) is null)
            return (Validation.Invalid(new Dictionary<string, string[]> { ["model"] = ["Unknown model; GET /v1/models lists them."] }), null);
        if (!System.Text.RegularExpressions.Regex.IsMatch(region, "^[a-z][a-z0-9-]{1,31}$"))
            return (Validation.Invalid(new Dictionary<string, string[]> { ["region"] = ["Region must look like 'eastus' or 'sweden-central'."] }), null);
        if (command.GpuKind is not { } kind) return (null, null);
        return await session.LoadAsync<GpuCalibration>(GpuCalibration.StreamId(kind, model), ct) is { } calibration
            ? (null, calibration)
            : (Validation.Invalid(new Dictionary<string, string[]> { ["gpuKind"] = [$"No calibration of {kind} for {model}; record one first (the reference batcher's calibrate command does)."] }), null);
    }

    static async Task<Results<Ok<PoolView>, ProblemHttpResult>> SetAsync(ModelCatalog catalog, string model, string region, ServingPhase phase, SetPoolCapacity command, IDocumentSession session, TimeProvider clock, CancellationToken ct)
    {
        var (problem, calibration) = await CheckAsync(catalog, model, region, command, session, ct);
        if (problem is not null) return problem;
        var id = CapacityPool.StreamId(model, region, phase);
        var stream = await session.Events.FetchForExclusiveWriting<CapacityPool>(id, ct);
        PhasePools.EnsureOneKind(model, region, phase, calibration is not null ? command.Gpus!.Value * calibration.PtuPerGpu : command.CapacityPtu!.Value,
            await session.LoadManyAsync<CapacityPool>(ct, PhasePools.StreamIds(model, region)));
        var events = calibration is not null
            ? PoolDecisions.SetGpus(stream.Aggregate, model, region, calibration, command.Gpus!.Value, clock.GetUtcNow(), phase)
            : PoolDecisions.SetCapacity(stream.Aggregate, model, region, command.CapacityPtu!.Value, clock.GetUtcNow(), phase);
        if (stream.Aggregate is null) session.Events.StartStream<CapacityPool>(id, events);
        else stream.AppendMany(events);
        await session.SaveChangesAsync(ct);
        var pool = await session.LoadAsync<CapacityPool>(id, ct);
        return TypedResults.Ok(PoolView.Of(pool!));
    }

    public static IEndpointRouteBuilder MapPools(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        var group = app.MapGroup("/v1/operator/pools").RequireAuthorization(Policies.Operator).WithTags("Operator: capacity");

        group.MapPut("/{model}/{region}/phases/{phase}", (string model, string region, string phase, SetPoolCapacity command, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
                PhasePools.Parse(phase) is { } p
                    ? SetAsync(catalog, model, region, p, command, session, clock, ct)
                    : Task.FromResult<Results<Ok<PoolView>, ProblemHttpResult>>(Validation.Invalid(new Dictionary<string, string[]> { ["phase"] = ["A phase is 'prompt' or 'generation'."] })))
            .ValidateWith(new Validator())
            .WithName("SetPhasePoolCapacity")
            .WithSummary("Split a region by phase: state its prompt or its generation capacity, each in PTUs of that phase's work or as GPUs of a calibrated kind. A deployment there draws its PTUs from both.")
            .ProducesProblem(409);

        group.MapGet("/", async (IQuerySession session, CancellationToken ct) =>
                TypedResults.Ok((await session.Query<CapacityPool>().OrderBy(p => p.Id).ToListAsync(ct)).Select(PoolView.Of)))
            .WithName("ListPools");

        var calibrations = app.MapGroup("/v1/operator/gpu-calibrations").RequireAuthorization(Policies.Operator).WithTags("Operator: capacity");
        calibrations.MapPut("/{gpuKind}/{model}", async Task<Results<Ok<GpuCalibration>, ProblemHttpResult>> (string gpuKind, string model, RecordCalibration command, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                if (catalog.Find(model) is null)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["model"] = ["Unknown model; GET /v1/models lists them."] });
                if (!System.Text.RegularExpressions.Regex.IsMatch(gpuKind, GpuKindPattern))
                    return Validation.Invalid(new Dictionary<string, string[]> { ["gpuKind"] = ["A GPU kind is a name like 'A100-80GB'."] });
                var id = GpuCalibration.StreamId(gpuKind, model);
                var stream = await session.Events.FetchForExclusiveWriting<GpuCalibration>(id, ct);
                var events = GpuCalibration.Record(stream.Aggregate, gpuKind, model, command.PtuPerGpu, command.WeightedTokensPerMinute, command.Scheduler, command.TokenBudget, clock.GetUtcNow());
                if (stream.Aggregate is null) session.Events.StartStream<GpuCalibration>(id, events);
                else stream.AppendMany(events);
                await session.SaveChangesAsync(ct);
                return TypedResults.Ok(await session.LoadAsync<GpuCalibration>(id, ct));
            })
            .ValidateWith(new CalibrationValidator())
            .WithName("RecordGpuCalibration").WithSummary("Record what one GPU of a kind serves of a model in full, in weighted tokens per minute and in PTUs; pools stated as GPUs of that kind use it.");
        calibrations.MapGet("/", async (IQuerySession session, CancellationToken ct) =>
                TypedResults.Ok(await session.Query<GpuCalibration>().OrderBy(c => c.Id).ToListAsync(ct)))
            .WithName("ListGpuCalibrations");
        return app;
    }
}
