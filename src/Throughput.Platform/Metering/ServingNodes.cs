using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Metering;

/// <summary>
/// An operator registered (or re-registered) a serving node: the producer id it meters under, the RabbitMQ user it
/// publishes as, and what it may serve. Events from before broker users were recorded carry none: the producer id is the user.
/// </summary>
public sealed record ServingNodeRegistered(string ProducerId, IReadOnlyList<string> Regions, IReadOnlyList<string> Tenants, DateTimeOffset RegisteredAt, string? BrokerUser = null);

/// <summary>A serving node's scope (empty lists mean every region / every tenant) and the broker user its metering must come from.</summary>
public sealed record ServingNode(string Id, IReadOnlyList<string> Regions, IReadOnlyList<string> Tenants, long Version, string BrokerUser = "")
{
    public static string StreamId(string producerId) => "node:" + producerId;

    public static ServingNode Create(ServingNodeRegistered e) => new(StreamId(e.ProducerId), e.Regions, e.Tenants, 0, e.BrokerUser ?? e.ProducerId);

    public ServingNode Apply(ServingNodeRegistered e) => this with { Regions = e.Regions, Tenants = e.Tenants, BrokerUser = e.BrokerUser ?? e.ProducerId };

    /// <summary>
    /// RabbitMQ refuses a message whose user-id property is not the publishing connection's user, so a matching user id
    /// proves which broker account sent it; a producer id in the body proves nothing by itself.
    /// </summary>
    public bool SentBy(string? brokerUser) => brokerUser is not null && string.Equals(brokerUser, BrokerUser, StringComparison.Ordinal);

    public bool MayServe(Deployment d) =>
        (Regions.Count == 0 || Regions.Contains(d.Region)) && (Tenants.Count == 0 || Tenants.Contains(d.TenantId));
}

/// <summary>Scope lists default to everything; the broker user defaults to the producer id (one broker account per node).</summary>
public sealed record RegisterServingNode(IReadOnlyList<string>? Regions, IReadOnlyList<string>? Tenants, string? BrokerUser = null);

public static class ServingNodes
{
    public sealed class Validator : AbstractValidator<RegisterServingNode>
    {
        public Validator()
        {
            RuleForEach(x => x.Regions).NotEmpty().Matches("^[a-z][a-z0-9-]{1,31}$");
            RuleForEach(x => x.Tenants).NotEmpty().MaximumLength(40);
            RuleFor(x => x.Regions).Must(r => r is null || r.Count <= 100);
            RuleFor(x => x.Tenants).Must(t => t is null || t.Count <= 10_000);
            RuleFor(x => x.BrokerUser).Matches("^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$").When(x => x.BrokerUser is not null)
                .WithMessage("1–128 letters, digits, '.', '_', '@', ':' or '-', starting with a letter or digit.");
        }
    }

    public static object[] Register(ServingNode? node, string producerId, RegisterServingNode command, DateTimeOffset now)
    {
        IReadOnlyList<string> regions = [.. (command.Regions ?? []).Distinct().Order(StringComparer.Ordinal)];
        IReadOnlyList<string> tenants = [.. (command.Tenants ?? []).Distinct().Order(StringComparer.Ordinal)];
        var brokerUser = command.BrokerUser ?? producerId;
        return node is not null && node.Regions.SequenceEqual(regions) && node.Tenants.SequenceEqual(tenants) && node.BrokerUser == brokerUser
            ? []
            : [new ServingNodeRegistered(producerId, regions, tenants, now, brokerUser)];
    }

    public static IEndpointRouteBuilder MapServingNodes(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/operator/serving-nodes").RequireAuthorization(Policies.Operator).WithTags("Operator: serving nodes");

        group.MapPut("/{producerId}", async (string producerId, RegisterServingNode command, IDocumentSession session, TimeProvider clock, CancellationToken ct) =>
            {
                if (!System.Text.RegularExpressions.Regex.IsMatch(producerId, "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"))
                    return Results.ValidationProblem(new Dictionary<string, string[]> { ["producerId"] = ["1–128 letters, digits, '.', '_', ':' or '-'."] });
                var stream = await session.Events.FetchForWriting<ServingNode>(ServingNode.StreamId(producerId), ct);
                var events = Register(stream.Aggregate, producerId, command, clock.GetUtcNow());
                stream.AppendMany(events);
                await session.SaveChangesAsync(ct);
                return Results.Ok(await session.LoadAsync<ServingNode>(ServingNode.StreamId(producerId), ct));
            })
            .ValidateWith(new Validator())
            .WithName("RegisterServingNode")
            .WithSummary("Let a producer id meter usage, published as the given RabbitMQ user (default: the producer id), for the regions and tenants listed (none listed: all).")
            .Produces<ServingNode>();

        group.MapGet("/", async (IQuerySession session, CancellationToken ct) => Results.Ok(await session.Query<ServingNode>().OrderBy(n => n.Id).ToListAsync(ct)))
            .WithName("ListServingNodes").Produces<IReadOnlyList<ServingNode>>();
        return app;
    }
}
