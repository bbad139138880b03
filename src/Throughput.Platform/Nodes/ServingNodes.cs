using FluentValidation;
using Marten;
using Throughput.Access;
using Throughput.Capacity;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Nodes;

/// <summary>An event of a serving node's stream.</summary>
public abstract record ServingNodeEvent(string ProducerId);

/// <summary>
/// An operator registered (or re-registered) a serving node: the producer id it meters under, the RabbitMQ user it
/// publishes as, and what it may serve. Events from before broker users were recorded carry none: the producer id is the user.
/// Events from before phase-split fleets carry no phase: the node serves whole requests.
/// </summary>
public sealed record ServingNodeRegistered(string ProducerId, IReadOnlyList<string> Regions, IReadOnlyList<string> Tenants, DateTimeOffset RegisteredAt, string? BrokerUser = null,
    ServingPhase Phase = ServingPhase.Whole)
    : ServingNodeEvent(ProducerId);

/// <summary>The node was given a (new) broker password; only its hash, in the broker's own format, is kept.</summary>
public sealed record ServingNodeCredentialsIssued(string ProducerId, string BrokerUser, string PasswordHash, DateTimeOffset IssuedAt) : ServingNodeEvent(ProducerId);

/// <summary>The node may no longer publish or read anything; its producer id is never used again.</summary>
public sealed record ServingNodeRevoked(string ProducerId, DateTimeOffset RevokedAt) : ServingNodeEvent(ProducerId);

/// <summary>A serving node's scope (empty lists mean every region / every tenant) and the broker user its metering must come from.</summary>
public sealed record ServingNode(string Id, IReadOnlyList<string> Regions, IReadOnlyList<string> Tenants, long Version, string BrokerUser = "",
    string? PasswordHash = null, bool Revoked = false, ServingPhase Phase = ServingPhase.Whole)
{
    public static string StreamId(string producerId) => "node:" + producerId;

    public string ProducerId => Id["node:".Length..];

    public static ServingNode Create(ServingNodeRegistered e) => new(StreamId(e.ProducerId), e.Regions, e.Tenants, 0, e.BrokerUser ?? e.ProducerId, Phase: e.Phase);

    public ServingNode Apply(ServingNodeRegistered e) => this with { Regions = e.Regions, Tenants = e.Tenants, BrokerUser = e.BrokerUser ?? e.ProducerId, Phase = e.Phase };

    public ServingNode Apply(ServingNodeCredentialsIssued e) => this with { BrokerUser = e.BrokerUser, PasswordHash = e.PasswordHash };

    public ServingNode Apply(ServingNodeRevoked e) => this with { Revoked = true, PasswordHash = null };

    /// <summary>The state after one more event of the node's stream, for folds outside Marten's snapshot (which calls Create and Apply itself).</summary>
    public ServingNode Then(ServingNodeEvent @event) => @event switch
    {
        ServingNodeRegistered e => Apply(e),
        ServingNodeCredentialsIssued e => Apply(e),
        ServingNodeRevoked e => Apply(e),
        _ => throw new ArgumentOutOfRangeException(nameof(@event), @event.GetType().Name, "not an event of a serving node's stream"),
    };

    /// <summary>
    /// RabbitMQ refuses a message whose user-id property is not the publishing connection's user, so a matching user id
    /// proves which broker account sent it; a producer id in the body proves nothing by itself.
    /// </summary>
    public bool SentBy(string? brokerUser) => brokerUser is not null && string.Equals(brokerUser, BrokerUser, StringComparison.Ordinal);

    public bool MayServe(Deployment d) =>
        (Regions.Count == 0 || Regions.Any(d.ServedFrom)) && (Tenants.Count == 0 || Tenants.Contains(d.TenantId));
}

/// <summary>What a serving node may serve and meter; scope lists default to everything.</summary>
/// <param name="Regions">The regions it serves; absent or empty: every region.</param>
/// <param name="Tenants">The tenants it serves; absent or empty: every tenant.</param>
/// <param name="Phase">Whole (absent), or on a phase-split fleet Prompt (a prompt server) or Generation (a generation server).</param>
public sealed record RegisterServingNode(IReadOnlyList<string>? Regions, IReadOnlyList<string>? Tenants, ServingPhase Phase = ServingPhase.Whole);

/// <summary>What a node needs to connect, shown once: its broker user and password on the platform's vhost.</summary>
/// <param name="ProducerId">The node's producer id: metering it publishes carries it as user_id.</param>
/// <param name="BrokerUser">Its RabbitMQ user.</param>
/// <param name="BrokerPassword">Its RabbitMQ password: shown once, stored only hashed.</param>
/// <param name="VirtualHost">The RabbitMQ virtual host to connect to.</param>
/// <param name="MeteringExchange">The exchange it publishes metering to.</param>
/// <param name="AdmissionExchange">The exchange its admission feed is bound to.</param>
public sealed record ServingNodeCredentials(string ProducerId, string BrokerUser, string BrokerPassword, string VirtualHost, string MeteringExchange, string AdmissionExchange);

/// <summary>A node as operators see it; the password hash stays inside.</summary>
/// <param name="ProducerId">The node's producer id.</param>
/// <param name="Regions">The regions it serves; empty: any region.</param>
/// <param name="Tenants">The tenants it may serve; empty: any tenant.</param>
/// <param name="BrokerUser">Its RabbitMQ user.</param>
/// <param name="HasCredentials">Whether broker credentials were issued to it.</param>
/// <param name="Revoked">Whether it was revoked: cut from the API and the broker.</param>
/// <param name="Phase">Whole, Prompt or Generation: the part of requests it serves.</param>
public sealed record ServingNodeView(string ProducerId, IReadOnlyList<string> Regions, IReadOnlyList<string> Tenants, string BrokerUser, bool HasCredentials, bool Revoked, ServingPhase Phase)
{
    public static ServingNodeView Of(ServingNode n) => new(n.ProducerId, n.Regions, n.Tenants, n.BrokerUser, n.PasswordHash is not null, n.Revoked, n.Phase);
}

public static partial class ServingNodes
{
    public sealed class Validator : AbstractValidator<RegisterServingNode>
    {
        public Validator()
        {
            RuleForEach(x => x.Regions).NotEmpty().Matches("^[a-z][a-z0-9-]{1,31}$");
            RuleForEach(x => x.Tenants).NotEmpty().MaximumLength(40);
            RuleFor(x => x.Regions).Must(r => r is null || r.Count <= 100);
            RuleFor(x => x.Tenants).Must(t => t is null || t.Count <= 10_000);
            RuleFor(x => x.Phase).IsInEnum();
        }
    }

    public static ServingNodeEvent[] Register(ServingNode? node, string producerId, RegisterServingNode command, DateTimeOffset now)
    {
        if (node?.Revoked == true) throw RuleViolation.Conflict($"Serving node '{producerId}' was revoked; register the node under a new producer id.");
        IReadOnlyList<string> regions = [.. (command.Regions ?? []).Distinct().Order(StringComparer.Ordinal)];
        IReadOnlyList<string> tenants = [.. (command.Tenants ?? []).Distinct().Order(StringComparer.Ordinal)];
        var brokerUser = BrokerAccounts.UserFor(producerId);
        var phase = command.Phase;
        return node is not null && node.Regions.SequenceEqual(regions) && node.Tenants.SequenceEqual(tenants) && node.BrokerUser == brokerUser && node.Phase == phase
            ? []
            : [new ServingNodeRegistered(producerId, regions, tenants, now, brokerUser, phase)];
    }

    public static ServingNodeEvent[] IssueCredentials(ServingNode? node, string producerId, string passwordHash, DateTimeOffset now) => node switch
    {
        null => throw RuleViolation.NotFound($"No serving node '{producerId}'; register it first."),
        { Revoked: true } => throw RuleViolation.Conflict($"Serving node '{producerId}' was revoked."),
        _ => [new ServingNodeCredentialsIssued(producerId, BrokerAccounts.UserFor(producerId), passwordHash, now)],
    };

    public static ServingNodeEvent[] Revoke(ServingNode? node, string producerId, DateTimeOffset now) => node switch
    {
        null => throw RuleViolation.NotFound($"No serving node '{producerId}'."),
        { Revoked: true } => [],
        _ => [new ServingNodeRevoked(producerId, now)],
    };

    public static IEndpointRouteBuilder MapServingNodes(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/operator/serving-nodes").RequireAuthorization(Policies.Operator).WithTags("Operator: serving nodes");

        group.MapPut("/{producerId}", async (string producerId, RegisterServingNode command, HttpContext http, IDocumentSession session, BrokerAccounts broker, TimeProvider clock, CancellationToken ct) =>
            {
                if (!ProducerIdPattern().IsMatch(producerId))
                    return Validation.Invalid(new Dictionary<string, string[]> { ["producerId"] = ["1–128 letters, digits, '.', '_', ':' or '-'."] });
                var stream = await session.Events.FetchForWriting<ServingNode>(ServingNode.StreamId(producerId), ct);
                stream.AppendMany(Register(stream.Aggregate, producerId, command, clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                var node = (await session.LoadAsync<ServingNode>(ServingNode.StreamId(producerId), ct))!;
                // A changed scope changes the node's topic permissions.
                return await OnBrokerAsync(http, () => broker.GrantAsync(node, ct), TypedResults.Ok(ServingNodeView.Of(node)));
            })
            .ValidateWith(new Validator())
            .WithName("RegisterServingNode")
            .WithSummary("Let a producer id meter usage for the regions and tenants listed (none listed: all). Its broker user is node.{producerId}; issue its password with POST …/credentials.")
            .ProducesProblem(409).ProducesProblem(503);

        group.MapPost("/{producerId}/credentials", async (string producerId, HttpContext http, IDocumentSession session, BrokerAccounts broker, TimeProvider clock, CancellationToken ct) =>
            {
                var stream = await session.Events.FetchForWriting<ServingNode>(ServingNode.StreamId(producerId), ct);
                var (password, hash) = BrokerAccounts.NewPassword();
                stream.AppendMany(IssueCredentials(stream.Aggregate, producerId, hash, clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                var node = (await session.LoadAsync<ServingNode>(ServingNode.StreamId(producerId), ct))!;
                return await OnBrokerAsync(http, () => broker.GrantAsync(node, ct),
                    TypedResults.Created($"/v1/operator/serving-nodes/{producerId}", broker.CredentialsOf(producerId, password)));
            })
            .WithName("IssueServingNodeCredentials")
            .WithSummary("Issue the node a new broker password (the old one stops working); shown once, stored only as a hash.")
            .ProducesProblem(404).ProducesProblem(409).ProducesProblem(503);

        group.MapDelete("/{producerId}", async (string producerId, HttpContext http, IDocumentSession session, BrokerAccounts broker, TimeProvider clock, CancellationToken ct) =>
            {
                var stream = await session.Events.FetchForWriting<ServingNode>(ServingNode.StreamId(producerId), ct);
                stream.AppendMany(Revoke(stream.Aggregate, producerId, clock.GetUtcNow()));
                await session.SaveChangesAsync(ct);
                return await OnBrokerAsync(http, () => broker.RevokeAsync(stream.Aggregate!.BrokerUser, ct), TypedResults.NoContent());
            })
            .WithName("RevokeServingNode")
            .WithSummary("Revoke the node: its broker user is deleted and its connections closed at once, and whatever it still publishes is quarantined.")
            .ProducesProblem(404).ProducesProblem(503);

        group.MapGet("/", async (IQuerySession session, CancellationToken ct) =>
                TypedResults.Ok((await session.Query<ServingNode>().OrderBy(n => n.Id).ToListAsync(ct)).Select(ServingNodeView.Of)))
            .WithName("ListServingNodes");
        return app;
    }

    /// <summary>
    /// The change is committed before the broker is told; when the broker's management API does not answer, the caller
    /// gets 503 and may retry (each step is idempotent), and the reconciler applies the change within half a minute anyway.
    /// </summary>
    static async Task<Results<TDone, ProblemHttpResult>> OnBrokerAsync<TDone>(HttpContext http, Func<Task> call, TDone done) where TDone : IResult
    {
        try
        {
            await call();
            return done;
        }
        catch (BrokerAccountsException e)
        {
            http.RequestServices.GetRequiredService<ILogger<BrokerAccounts>>().LogWarning(e, "The broker did not take a serving node's change yet");
            http.Response.Headers.RetryAfter = "5";
            return TypedResults.Problem(statusCode: 503, title: "Broker unavailable",
                detail: "The change is recorded; the broker has not applied it yet and will within 30 seconds. Retry to confirm.");
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    private static partial System.Text.RegularExpressions.Regex ProducerIdPattern();
}
