using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Catalog;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Adapters;

/// <summary>An adapter deployment: one adapter with PTUs of its own, from its base model's pool, at the base model's rates.</summary>
/// <param name="Name">What the tenant calls it: up to 100 characters.</param>
/// <param name="AdapterId">One of the tenant's registered adapters (<c>POST /v1/adapters</c>).</param>
/// <param name="Region">A region with a pool of the adapter's base model, e.g. <c>westus</c>.</param>
/// <param name="Type">Global, DataZone or Regional.</param>
/// <param name="Ptu">Provisioned throughput units; the base model's minimum and increment apply.</param>
/// <param name="Spillover">Serve requests above the purchased rate instead of throttling them, billed per 1M tokens.</param>
public sealed record DeployAdapter(string Name, string AdapterId, string Region, DeploymentType Type, decimal Ptu, bool Spillover = false) : IPurchaseTerms;

/// <summary>An adapter set: one PTU allotment (one rate, one bucket) shared by up to 1,000 of the tenant's adapters of one base model.</summary>
/// <param name="Name">What the tenant calls it: up to 100 characters.</param>
/// <param name="Model">The base model every adapter of the set belongs to.</param>
/// <param name="Region">A region with a pool of the base model, e.g. <c>westus</c>.</param>
/// <param name="Type">Global, DataZone or Regional.</param>
/// <param name="Ptu">Provisioned throughput units shared by the set; the model's minimum and increment apply.</param>
/// <param name="Adapters">1 to 1,000 of the tenant's adapters of the model, each with an optional cap.</param>
/// <param name="Spillover">Serve requests above the purchased rate instead of throttling them, billed per 1M tokens.</param>
public sealed record DeployAdapterSet(string Name, string Model, string Region, DeploymentType Type, decimal Ptu, IReadOnlyList<SetMember> Adapters, bool Spillover = false)
    : IPurchaseTerms;

/// <summary>An adapter of a set, and optionally its cap: the share of the set's rate it may use (0.25 = a quarter).</summary>
/// <param name="AdapterId">One of the tenant's registered adapters of the set's model.</param>
/// <param name="Cap">The share of the set's rate this adapter may use, more than 0 and at most 1; absent: no cap.</param>
public sealed record SetMember(string AdapterId, decimal? Cap = null);

public static class DeployAdapters
{
    public sealed class AdapterValidator : AbstractValidator<DeployAdapter>
    {
        public AdapterValidator()
        {
            Include(new Purchase.TermsValidator());
            RuleFor(x => x.AdapterId).NotEmpty().Matches(Registration.IdPattern);
        }
    }

    public sealed class SetValidator : AbstractValidator<DeployAdapterSet>
    {
        public SetValidator(ModelCatalog catalog)
        {
            Include(new Purchase.TermsValidator());
            RuleFor(x => x.Model).NotEmpty().Must(m => catalog.Find(m) is not null).WithMessage("Unknown model; GET /v1/models lists them.");
            RuleFor(x => x.Adapters).NotEmpty()
                .Must(a => a is null || a.Count <= DeploymentAdapters.MaxShared).WithMessage($"An adapter set holds at most {DeploymentAdapters.MaxShared:N0} adapters.")
                .Must(a => a is null || a.Where(m => m is not null).Select(m => m.AdapterId).Distinct(StringComparer.Ordinal).Count() == a.Count).WithMessage("Each adapter once.");
            RuleForEach(x => x.Adapters).NotNull().ChildRules(m =>
            {
                m.RuleFor(x => x.AdapterId).NotEmpty().Matches(Registration.IdPattern);
                m.RuleFor(x => x.Cap).GreaterThan(0).LessThanOrEqualTo(1).PrecisionScale(6, 4, ignoreTrailingZeros: true);
            });
        }
    }

    /// <summary>
    /// Why a set's adapters cannot be deployed, per field (none when they can): each must be registered by this tenant
    /// (another tenant's adapter of the same name is simply not found) and a fine-tune of the set's model.
    /// </summary>
    public static Dictionary<string, string[]> Problems(string model, IReadOnlyList<SetMember> members, IReadOnlyDictionary<string, Adapter> registered)
    {
        Dictionary<string, string[]> errors = [];
        for (var i = 0; i < members.Count; i++)
        {
            if (!registered.TryGetValue(members[i].AdapterId, out var adapter))
                errors[$"adapters[{i}].adapterId"] = [$"No adapter '{members[i].AdapterId}'; register it first (POST /v1/adapters)."];
            else if (adapter.BaseModel != model)
                errors[$"adapters[{i}].adapterId"] = [$"Adapter '{adapter.AdapterId}' is a fine-tune of {adapter.BaseModel}, not of {model}."];
        }
        return errors;
    }

    public static IEndpointRouteBuilder MapAdapterDeployments(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapPost("/v1/adapter-deployments", async (DeployAdapter command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var adapter = await session.LoadAsync<Adapter>(Adapter.StreamId(tenantId, command.AdapterId), ct);
                if (adapter is null)
                    return Validation.Invalid(new Dictionary<string, string[]> { ["adapterId"] = [$"No adapter '{command.AdapterId}'; register it first (POST /v1/adapters)."] }, 422);
                var adapters = new DeploymentAdapters(false, new Dictionary<string, decimal?> { [adapter.AdapterId] = null });
                var purchase = new PurchaseDeployment(command.Name, adapter.BaseModel, command.Region, command.Type, command.Ptu, command.Spillover);
                return (IResult)await Purchase.BuyAsync(purchase, adapters, http, session, catalog, clock, ct);
            })
            .ValidateWith(new AdapterValidator())
            .RequireAuthorization(Policies.Tenant).WithTags("Adapters")
            .WithName("DeployAdapter").WithHeader(ContractHeader.IdempotencyKey).WithHeader(ContractHeader.ETag)
            .WithSummary("Buy PTUs for one adapter, from its base model's pool at the base model's rates, plus its hosting per adapter-hour.")
            .Produces<DeploymentView>(201).ProducesProblem(409).ProducesProblem(422);

        app.MapPost("/v1/adapter-sets", async (DeployAdapterSet command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var tenantId = http.User.TenantId()!;
                var found = await session.LoadManyAsync<Adapter>(ct, [.. command.Adapters.Select(m => Adapter.StreamId(tenantId, m.AdapterId))]);
                var problems = Problems(command.Model, command.Adapters, found.ToDictionary(a => a.AdapterId, StringComparer.Ordinal));
                if (problems.Count > 0) return Validation.Invalid(problems, 422);
                var adapters = new DeploymentAdapters(true, command.Adapters.ToDictionary(m => m.AdapterId, m => m.Cap, StringComparer.Ordinal));
                var purchase = new PurchaseDeployment(command.Name, command.Model, command.Region, command.Type, command.Ptu, command.Spillover);
                return (IResult)await Purchase.BuyAsync(purchase, adapters, http, session, catalog, clock, ct);
            })
            .ValidateWith(new SetValidator(catalog))
            .RequireAuthorization(Policies.Tenant).WithTags("Adapters")
            .WithName("DeployAdapterSet").WithHeader(ContractHeader.IdempotencyKey).WithHeader(ContractHeader.ETag)
            .WithSummary("Buy one PTU allotment shared by up to 1,000 of your adapters of one base model, with optional per-adapter caps (a share of the rate), plus hosting per adapter-hour.")
            .Produces<DeploymentView>(201).ProducesProblem(409).ProducesProblem(422);
        return app;
    }
}
