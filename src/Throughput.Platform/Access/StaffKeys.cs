using FluentValidation;
using Marten;
using Throughput.Http;

namespace Throughput.Access;

/// <summary>A key for platform staff.</summary>
/// <param name="Role">Finance or Operator.</param>
/// <param name="Name">Who or what holds it, for the audit trail.</param>
public sealed record IssueStaffKey(Role Role, string Name);

/// <summary>Operator slices for keys of operators, finance and serving nodes.</summary>
public static class StaffKeys
{
    public sealed class Validator : AbstractValidator<IssueStaffKey>
    {
        public Validator()
        {
            RuleFor(x => x.Role).IsInEnum().NotEqual(Role.Tenant).WithMessage("Tenant keys are issued under /v1/operator/tenants/{id}/keys.");
            RuleFor(x => x.Name).Text(100);
        }
    }

    public static IEndpointRouteBuilder MapStaffKeys(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/operator/keys").RequireAuthorization(Policies.Operator).WithTags("Operator: keys");

        group.MapPost("/", async Task<Results<Created<IssuedApiKey>, ProblemHttpResult>> (IssueStaffKey command, HttpContext http, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var (idempotencyKey, badKey) = IdempotencyKeys.Of(http);
                if (badKey is not null) return badKey;
                var keyId = idempotencyKey is null ? ApiKeySecrets.NewKeyId() : ApiKeySecrets.KeyIdFor(Staff.StreamId, idempotencyKey);
                var secret = ApiKeySecrets.NewSecret();
                var stream = await session.Events.FetchForWriting<Staff>(Staff.StreamId, ct);
                stream.AppendMany(Staff.Issue(stream.Aggregate, keyId, command.Role, command.Name, ApiKeySecrets.Hash(secret), clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                return TypedResults.Created($"/v1/operator/keys/{keyId}", new IssuedApiKey(keyId, command.Role, ApiKeySecrets.Token(keyId, secret)));
            })
            .ValidateWith(new Validator())
            .WithName("IssueStaffKey").WithHeader(ContractHeader.IdempotencyKey).WithSummary("Issue a key for an operator, finance user or serving node. The secret is returned once.")
            .ProducesProblem(409);

        group.MapDelete("/{keyId}", async (string keyId, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                var stream = await session.Events.FetchForWriting<Staff>(Staff.StreamId, ct);
                stream.AppendMany(Staff.Revoke(stream.Aggregate, keyId, clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                return TypedResults.NoContent();
            })
            .WithName("RevokeStaffKey").ProducesProblem(404);
        return app;
    }
}
