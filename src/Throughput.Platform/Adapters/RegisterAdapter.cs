using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Catalog;
using Throughput.Http;

namespace Throughput.Adapters;

/// <summary>A fine-tuned adapter of a base model, registered as metadata only (no weights).</summary>
/// <param name="Id">1–64 letters, digits, '.', '_' or '-': the id serving nodes put in a record's <c>adapterId</c>.</param>
/// <param name="BaseModel">The model it was trained on, one of the catalog (<c>GET /v1/models</c>).</param>
/// <param name="Rank">The adapter's low-rank dimension, 1 to 1,024.</param>
/// <param name="SizeMb">Its size in megabytes, more than 0 and at most 100,000.</param>
public sealed record RegisterAdapter(string Id, string BaseModel, int Rank, decimal SizeMb);

/// <summary>Up to <see cref="Registration.MaxBatch"/> registrations in one request, all or none: a set's adapters arrive together.</summary>
/// <param name="Adapters">The adapters to register, all or none.</param>
public sealed record RegisterAdapters(IReadOnlyList<RegisterAdapter> Adapters);

/// <summary>An adapter as the API answers it.</summary>
/// <param name="Id">The adapter's id, unique in the tenant; metering records name it as adapterId.</param>
/// <param name="BaseModel">The catalog model the adapter fine-tunes.</param>
/// <param name="Rank">The low-rank weights' rank.</param>
/// <param name="SizeMb">The weights' size in megabytes.</param>
/// <param name="RegisteredAt">When it was registered.</param>
public sealed record AdapterView(string Id, string BaseModel, int Rank, decimal SizeMb, DateTimeOffset RegisteredAt)
{
    public static AdapterView Of(Adapter a) => new(a.AdapterId, a.BaseModel, a.Rank, a.SizeMb, a.RegisteredAt);
}

public static class Registration
{
    /// <summary>What metering records may carry as <c>adapterId</c> (the contract's id pattern, shorter).</summary>
    public const string IdPattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

    public const int MaxBatch = 1_000;

    public sealed class Validator : AbstractValidator<RegisterAdapter>
    {
        public Validator(ModelCatalog catalog)
        {
            RuleFor(x => x.Id).NotEmpty().Matches(IdPattern).WithMessage("An adapter id is 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit.");
            RuleFor(x => x.BaseModel).NotEmpty().Must(m => catalog.Find(m) is not null).WithMessage("Unknown model; GET /v1/models lists them.");
            RuleFor(x => x.Rank).InclusiveBetween(1, 1024);
            RuleFor(x => x.SizeMb).GreaterThan(0).LessThanOrEqualTo(100_000).PrecisionScale(12, 3, ignoreTrailingZeros: true);
        }
    }

    public sealed class BatchValidator : AbstractValidator<RegisterAdapters>
    {
        public BatchValidator(ModelCatalog catalog)
        {
            RuleFor(x => x.Adapters).NotEmpty()
                .Must(a => a is null || a.Count <= MaxBatch).WithMessage($"At most {MaxBatch:N0} adapters a request.")
                .Must(a => a is null || a.Where(r => r is not null).Select(r => r.Id).Distinct(StringComparer.Ordinal).Count() == a.Count).WithMessage("Each adapter once.");
            RuleForEach(x => x.Adapters).NotNull().SetValidator(new Validator(catalog));
        }
    }

    /// <summary>Registering is idempotent: the same metadata again answers the adapter; other metadata under its id is a conflict.</summary>
    public static AdapterRegistered? Decide(Adapter? existing, string tenantId, RegisterAdapter command, DateTimeOffset now)
    {
        if (existing is null)
            return new AdapterRegistered(Adapter.StreamId(tenantId, command.Id), tenantId, command.Id, command.BaseModel, command.Rank, command.SizeMb, now);
        if (existing.BaseModel == command.BaseModel && existing.Rank == command.Rank && existing.SizeMb == command.SizeMb) return null;
        throw RuleViolation.Conflict($"Adapter '{command.Id}' is registered already, with other metadata.");
    }

    public static IEndpointRouteBuilder MapAdapterRegistration(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        var group = app.MapGroup("/v1/adapters").RequireAuthorization(Policies.Tenant).WithTags("Adapters");
        group.MapPost("/", async Task<Results<Created<AdapterView>, Ok<AdapterView>>> (RegisterAdapter command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var id = Adapter.StreamId(tenantId, command.Id);
                var existing = await session.LoadAsync<Adapter>(id, ct);
                if (Decide(existing, tenantId, command, clock.GetUtcNow()) is not { } registered) return TypedResults.Ok(AdapterView.Of(existing!));
                session.Events.StartStream<Adapter>(id, registered);
                try
                {
                    await session.SaveChangesAsync(ct);
                }
                catch (Marten.Exceptions.ExistingStreamIdCollisionException)
                {
                    await using var fresh = session.DocumentStore.QuerySession();
                    var winner = (await fresh.LoadAsync<Adapter>(id, ct))!;
                    Decide(winner, tenantId, command, registered.RegisteredAt); // a concurrent registration with other metadata is a conflict
                    return TypedResults.Ok(AdapterView.Of(winner));
                }
                return TypedResults.Created($"/v1/adapters/{command.Id}", AdapterView.Of(Adapter.Create(registered)));
            })
            .ValidateWith(new Validator(catalog))
            .WithName("RegisterAdapter").WithSummary("Register an adapter (a fine-tune) of a base model: its id, base model, rank and size. Metadata only.")
            .ProducesProblem(409);

        group.MapPost("/batch", async Task<Ok<IEnumerable<AdapterView>>> (RegisterAdapters command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var now = clock.GetUtcNow();
                var existing = (await session.LoadManyAsync<Adapter>(ct, [.. command.Adapters.Select(a => Adapter.StreamId(tenantId, a.Id))])).ToDictionary(a => a.AdapterId, StringComparer.Ordinal);
                List<Adapter> adapters = [];
                foreach (var request in command.Adapters)
                {
                    if (Decide(existing.GetValueOrDefault(request.Id), tenantId, request, now) is not { } registered)
                    {
                        adapters.Add(existing[request.Id]);
                        continue;
                    }
                    session.Events.StartStream<Adapter>(registered.Id, registered);
                    adapters.Add(Adapter.Create(registered));
                }
                try
                {
                    await session.SaveChangesAsync(ct);
                }
                catch (Marten.Exceptions.ExistingStreamIdCollisionException)
                {
                    throw RuleViolation.Conflict("Some of these adapters were registered meanwhile by another request; send the batch again.");
                }
                return TypedResults.Ok(adapters.Select(AdapterView.Of));
            })
            .ValidateWith(new BatchValidator(catalog))
            .WithName("RegisterAdapters").WithSummary("Register up to 1,000 adapters at once, all or none; each one already registered with the same metadata is answered as it is.")
            .ProducesProblem(409);

        group.MapGet("/", async (HttpContext http, IQuerySession session, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var adapters = await session.Query<Adapter>().Where(a => a.TenantId == tenantId).OrderBy(a => a.AdapterId).ToListAsync(ct);
                return TypedResults.Ok(adapters.Select(AdapterView.Of));
            })
            .WithName("ListAdapters").WithSummary("The caller's adapters.");

        group.MapGet("/{adapterId}", async (string adapterId, HttpContext http, IQuerySession session, CancellationToken ct) =>
                await session.LoadAsync<Adapter>(Adapter.StreamId(http.User.TenantId()!, adapterId), ct) is { } adapter
                    ? TypedResults.Ok(AdapterView.Of(adapter))
                    : throw RuleViolation.NotFound($"No adapter '{adapterId}'."))
            .WithName("GetAdapter").ProducesProblem(404);
        return app;
    }
}
