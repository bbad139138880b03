using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Catalog;
using Throughput.Http;

namespace Throughput.Capacity;

public sealed record SetPoolCapacity(decimal CapacityPtu);

public sealed record PoolView(string Id, string Model, string Region, decimal CapacityPtu, decimal SoldPtu, decimal FreePtu, long Version)
{
    public static PoolView Of(CapacityPool p) => new(p.Id, p.Model, p.Region, p.Capacity, p.Sold, p.Free, p.Version);
}

/// <summary>Operator slices: register GPU capacity per model and region, see sold against available.</summary>
public static class Pools
{
    public sealed class Validator : AbstractValidator<SetPoolCapacity>
    {
        public Validator() => RuleFor(x => x.CapacityPtu).GreaterThanOrEqualTo(0).LessThanOrEqualTo(10_000_000).PrecisionScale(14, 4, ignoreTrailingZeros: true);
    }

    public static IEndpointRouteBuilder MapPools(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        var group = app.MapGroup("/v1/operator/pools").RequireAuthorization(Policies.Operator).WithTags("Operator: capacity");

        group.MapPut("/{model}/{region}", async (string model, string region, SetPoolCapacity command, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                if (catalog.Find(model) is null)
                    return Results.ValidationProblem(new Dictionary<string, string[]> { ["model"] = ["Unknown model; GET /v1/models lists them."] });
                if (!System.Text.RegularExpressions.Regex.IsMatch(region, "^[a-z][a-z0-9-]{1,31}$"))
                    return Results.ValidationProblem(new Dictionary<string, string[]> { ["region"] = ["Region must look like 'eastus' or 'sweden-central'."] });
                var stream = await session.Events.FetchForExclusiveWriting<CapacityPool>(CapacityPool.StreamId(model, region), ct);
                var events = PoolDecisions.SetCapacity(stream.Aggregate, model, region, command.CapacityPtu, clock.GetUtcNow());
                if (stream.Aggregate is null) session.Events.StartStream<CapacityPool>(CapacityPool.StreamId(model, region), events);
                else stream.AppendMany(events);
                await session.SaveChangesAsync(ct);
                var pool = await session.LoadAsync<CapacityPool>(CapacityPool.StreamId(model, region), ct);
                return Results.Ok(PoolView.Of(pool!));
            })
            .ValidateWith(new Validator())
            .WithName("SetPoolCapacity").WithSummary("State the PTUs of GPU capacity for a model in a region; it may not go below what is sold.")
            .Produces<PoolView>().ProducesProblem(409);

        group.MapGet("/", async (IQuerySession session, CancellationToken ct) =>
                Results.Ok((await session.Query<CapacityPool>().OrderBy(p => p.Id).ToListAsync(ct)).Select(PoolView.Of)))
            .WithName("ListPools").Produces<IReadOnlyList<PoolView>>();
        return app;
    }
}
