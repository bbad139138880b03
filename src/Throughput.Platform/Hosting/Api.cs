using System.Text.Json;
using System.Text.Json.Serialization;
using FluentValidation;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.OpenApi;
using Scalar.AspNetCore;
using Throughput.Access;
using Throughput.Http;

namespace Throughput.Hosting;

public static class Api
{
    public static IServiceCollection AddThroughputApi(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddRequestLimits(configuration);
        services.Configure<JsonOptions>(o =>
        {
            o.SerializerOptions.Converters.Add(new JsonStringEnumConverter(allowIntegerValues: false));
            // A billing API refuses what it does not understand rather than silently dropping it.
            o.SerializerOptions.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
        });
        // Binding failures throw so the problem mapper can name the offending field.
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddProblemDetails(o => o.CustomizeProblemDetails = c => ProblemTypes.Name(c.ProblemDetails));
        // Field errors name the JSON property the client sent, not the C# member.
        ValidatorOptions.Global.PropertyNameResolver = (_, member, _) => member is null ? null : JsonNamingPolicy.CamelCase.ConvertName(member.Name);
        ValidatorOptions.Global.DisplayNameResolver = (_, member, _) => member is null ? null : JsonNamingPolicy.CamelCase.ConvertName(member.Name);
        services.AddExceptionHandler<ProblemMapper>();
        services.AddOpenApi(o => o.AddDocumentTransformer((document, _, _) =>
        {
            document.Info = new OpenApiInfo
            {
                Title = "Throughput API",
                Version = "v1",
                Description = "Buy fractional PTUs, read usage and invoices, manage capacity. Authenticate with 'Authorization: Bearer tpk_…'.",
            };
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes["ApiKey"] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                Description = "An API key issued by an operator: tpk_{keyId}.{secret}",
            };
            document.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("ApiKey", document)] = [] }];
            // A nullable field of a schema type is written oneOf [null, $ref] with its XML comment on the $ref: clients read
            // a field's description beside its name, so it is said there too.
            // The XML comments arrive with their entities (&amp;, &lt;) still escaped: they are decoded here.
            // Every problem carries the request's trace id beside RFC 9457's fields (the framework adds it).
            foreach (var name in (string[])["ProblemDetails", "HttpValidationProblemDetails"])
                if (document.Components.Schemas is { } schemas && schemas.TryGetValue(name, out var found) && found is OpenApiSchema problem)
                    (problem.Properties ??= new Dictionary<string, IOpenApiSchema>())["traceId"] = new OpenApiSchema
                    {
                        Type = JsonSchemaType.String,
                        Description = "The W3C trace id of the request: the host's log lines and spans for it carry the same id.",
                        Examples = ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"],
                    };
            foreach (var schema in document.Components.Schemas?.Values ?? [])
            {
                if (schema is OpenApiSchema { Description: { } text } described) described.Description = System.Net.WebUtility.HtmlDecode(text);
                foreach (var field in schema.Properties?.Values ?? [])
                {
                    if (field is OpenApiSchema { Description: null or "", OneOf: { } branches } nullable
                        && branches.Select(b => b.Description).FirstOrDefault(d => !string.IsNullOrEmpty(d)) is { } description)
                        nullable.Description = description;
                    if (field is OpenApiSchema { Description: { } escaped } plain) plain.Description = System.Net.WebUtility.HtmlDecode(escaped);
                }
            }
            return Task.CompletedTask;
        }).AddSchemaTransformer((schema, context, _) =>
        {
            // An example for each request body, written as the type itself so that it cannot drift from it.
            if (RequestExamples.TryGetValue(context.JsonTypeInfo.Type, out var example))
                schema.Examples = [JsonSerializer.SerializeToNode(example, context.JsonTypeInfo.Options)!];
            if (context.JsonPropertyInfo is { } named && FieldExample(named.Name, context.JsonTypeInfo.Type) is { } value)
                schema.Examples = [value];
            // The framework's problem details carry no XML comments of ours: RFC 9457's words for their fields.
            if (context.JsonPropertyInfo is { } field && typeof(Microsoft.AspNetCore.Mvc.ProblemDetails).IsAssignableFrom(field.DeclaringType)
                && ProblemFields.TryGetValue(field.Name, out var description))
                schema.Description = description;
            return Task.CompletedTask;
        }).AddOperationTransformer((operation, context, _) =>
        {
            var metadata = context.Description.ActionDescriptor.EndpointMetadata;
            DeclareHeaders(operation, metadata.OfType<ContractHeaders>().Select(h => h.Header).ToHashSet(), metadata.OfType<Microsoft.AspNetCore.Authorization.IAllowAnonymous>().Any());
            return Task.CompletedTask;
        }));
        return services;
    }

    /// <summary>
    /// An example of each field whose JSON name means one thing across the API (ids, months, money, PTUs), and of every
    /// instant; names that mean different things on different schemas (<c>id</c>, <c>total</c>) get none.
    /// </summary>
    static readonly Dictionary<string, System.Text.Json.Nodes.JsonNode> FieldExamples = new(StringComparer.Ordinal)
    {
        ["deploymentId"] = "dep-3f9a1c",
        ["tenantId"] = "acme",
        ["producerId"] = "node-westus-1",
        ["invoiceId"] = "inv-acme-202611",
        ["invoiceNumber"] = "INV-00000042",
        ["creditNoteId"] = "cn-acme-202611-1",
        ["model"] = "gpt-4o-mini",
        ["baseModel"] = "gpt-4o-mini",
        ["region"] = "westus",
        ["currency"] = "USD",
        ["month"] = "2026-11",
        ["serviceMonth"] = "2026-10",
        ["invoiceMonth"] = "2026-10",
        ["ptu"] = 0.5m,
        ["amount"] = 12.50m,
        ["balance"] = 256.30m,
        ["credited"] = 12.50m,
        ["unitPrice"] = 1.00m,
        ["accrued"] = 48_210.75m,
        ["pricePerPtuHour"] = 1.00m,
    };

    static readonly System.Text.Json.Nodes.JsonNode Instant = "2026-11-22T10:30:00+00:00";

    /// <summary>The example of a field, or null: instants by their type, the rest by name, only where the type is a plain value.</summary>
    static System.Text.Json.Nodes.JsonNode? FieldExample(string name, Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(DateTimeOffset)) return Instant.DeepClone();
        return (type == typeof(string) || type == typeof(decimal)) && FieldExamples.TryGetValue(name, out var example) ? example.DeepClone() : null;
    }

    /// <summary>The fields of an RFC 9457 problem, as every error answer carries them.</summary>
    static readonly Dictionary<string, string> ProblemFields = new(StringComparer.Ordinal)
    {
        ["type"] = "A URI naming the kind of problem; about:blank when the status says it all.",
        ["title"] = "A short summary of the kind of problem, the same for every occurrence of it.",
        ["status"] = "The HTTP status code.",
        ["detail"] = "What went wrong this time, in words.",
        ["instance"] = "The request path the problem occurred at.",
        ["errors"] = "The fields that were wrong, by their JSON names, each with what is wrong with it.",
    };

    /// <summary>One example of each body a client writes, as the API reference and generated clients show it.</summary>
    static readonly Dictionary<Type, object> RequestExamples = new()
    {
        [typeof(Deployments.PurchaseDeployment)] = new Deployments.PurchaseDeployment("chat", "gpt-4o-mini", "westus", Catalog.DeploymentType.Global, 0.5m, Spillover: true),
        [typeof(Deployments.ResizeDeployment)] = new Deployments.ResizeDeployment(1.5m),
        [typeof(Deployments.SetSpillover)] = new Deployments.SetSpillover(true),
        [typeof(Capacity.EstimateCapacity)] = new Capacity.EstimateCapacity("gpt-4o-mini", 60, 800, 200, 0.25m),
        [typeof(Capacity.SetPoolCapacity)] = new Capacity.SetPoolCapacity(null, 2, "A100-80GB"),
        [typeof(Capacity.RecordCalibration)] = new Capacity.RecordCalibration(12.4m, 3_100_000, "Flywheel", 2048),
        [typeof(Tenants.CreateTenant)] = new Tenants.CreateTenant("acme", "Acme Corporation", "EUR"),
        [typeof(Tenants.SuspendTenant)] = new Tenants.SuspendTenant("Invoice 2026-10 unpaid after 60 days"),
        [typeof(Reservations.PurchaseReservation)] = new Reservations.PurchaseReservation("gpt-4o", "eastus", Catalog.DeploymentType.Global, 2, Catalog.ReservationTerm.Year),
        [typeof(Invoicing.IssueCreditNote)] = new Invoicing.IssueCreditNote(12.50m, null, "Outage on 3 March, 40 minutes"),
        [typeof(IssueStaffKey)] = new IssueStaffKey(Role.Finance, "Dana, accounts receivable"),
        [typeof(Nodes.RegisterServingNode)] = new Nodes.RegisterServingNode(["westus"], []),
        [typeof(Admission.AdmissionCheck)] = new Admission.AdmissionCheck(1200),
        [typeof(Contracts.AdmissionQuery)] = new Contracts.AdmissionQuery(["dep-3f9a1c", "dep-77b0e2"]),
        [typeof(Contracts.AdmissionLeaseRenewal)] = new Contracts.AdmissionLeaseRenewal([new Contracts.AdmissionDemand("dep-3f9a1c", 45_000, 30_000, 30_000, 1_764_849_600_123)]),
        [typeof(Adapters.RegisterAdapter)] = new Adapters.RegisterAdapter("support-bot-v3", "gpt-4o-mini", 16, 54.5m),
        [typeof(Adapters.RegisterAdapters)] = new Adapters.RegisterAdapters([new Adapters.RegisterAdapter("support-bot-v3", "gpt-4o-mini", 16, 54.5m), new Adapters.RegisterAdapter("legal-summaries", "gpt-4o-mini", 8, 27.2m)]),
        [typeof(Adapters.DeployAdapter)] = new Adapters.DeployAdapter("support", "support-bot-v3", "westus", Catalog.DeploymentType.Global, 0.5m),
        [typeof(Adapters.DeployAdapterSet)] = new Adapters.DeployAdapterSet("fine-tunes", "gpt-4o-mini", "westus", Catalog.DeploymentType.Global, 1m,
            [new Adapters.SetMember("support-bot-v3"), new Adapters.SetMember("legal-summaries", 0.25m)]),
        [typeof(Forge.DrainPool)] = new Forge.DrainPool(0),
        [typeof(Alerts.SetAlert)] = new Alerts.SetAlert(Alerts.AlertMetric.SpilloverSpend, 250m, "dep-3f9a1c", CapsSpillover: true, "spillover budget"),
        [typeof(Webhooks.RegisterWebhookEndpoint)] = new Webhooks.RegisterWebhookEndpoint("https://hooks.acme.example/throughput", ["deployment.throttled", "invoice.issued"], "billing"),
    };

    /// <summary>
    /// The headers each operation's contract includes: Idempotency-Key and If-Match where the endpoint takes them, ETag on
    /// the success of those that return one, and on every operation that takes a key its 401 and 403, the 429 of the
    /// per-key rate limit and the 503 of a database outage, both with Retry-After.
    /// </summary>
    static void DeclareHeaders(OpenApiOperation operation, HashSet<ContractHeader> headers, bool anonymous)
    {
        static OpenApiSchema Text(int? maxLength = null) => new() { Type = JsonSchemaType.String, MaxLength = maxLength };
        static OpenApiHeader RetryAfter() => new() { Description = "Seconds to wait before retrying.", Schema = new OpenApiSchema { Type = JsonSchemaType.Integer } };
        operation.Parameters ??= [];
        if (headers.Contains(ContractHeader.IdempotencyKey))
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = "Idempotency-Key", In = ParameterLocation.Header, Required = false, Schema = Text(IdempotencyKeys.MaxLength),
                Description = "Any unique string (a UUID): a retry with the same key answers as the first request did and never acts twice.",
            });
        if (headers.Contains(ContractHeader.IfMatch))
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = "If-Match", In = ParameterLocation.Header, Required = true, Schema = Text(),
                Description = "The ETag of the revision the change is decided on; 412 if it changed since, 428 without it.",
            });
        operation.Responses ??= [];
        // Authentication reads a key from PostgreSQL when it is not cached, so every operation that takes one can meet an outage.
        // An endpoint's own 429 or 503 (the admission check's refusal, an unreachable broker) keeps its description, and
        // gains the problem answer every keyed call can meet when its own is another media type.
        if (!anonymous)
            foreach (var (status, description) in KeyedProblems)
                if (!operation.Responses.TryAdd(status, Problem(description)) && operation.Responses[status] is OpenApiResponse { Content: { } own } mine
                    && own.TryAdd("application/problem+json", ProblemContent()))
                    mine.Description = $"{mine.Description} Or, as application/problem+json: {description}";
        if (operation.RequestBody is not null)
            operation.Responses.TryAdd("413", Problem("The body is over the host's limit (RequestLimits:MaxBodyBytes)."));
        foreach (var (status, response) in operation.Responses)
        {
            if (response is OpenApiResponse { Content: { } content } refused && int.TryParse(status, out var code) && code >= 400
                && content.TryGetValue("application/problem+json", out var problem))
                DeclareProblemTypes(refused, problem, code, headers.Contains(ContractHeader.IdempotencyKey));
            if (headers.Contains(ContractHeader.ETag) && status.StartsWith('2') && response is OpenApiResponse success)
                (success.Headers ??= new Dictionary<string, IOpenApiHeader>())["ETag"] = new OpenApiHeader { Description = "The revision: send it back in If-Match to change what you read.", Schema = Text() };
            if (status is "429" or "503" && response is OpenApiResponse comeBack)
                (comeBack.Headers ??= new Dictionary<string, IOpenApiHeader>())["Retry-After"] = RetryAfter();
        }
    }

    static OpenApiResponse Problem(string description) => new()
    {
        Description = description,
        Content = new Dictionary<string, OpenApiMediaType> { ["application/problem+json"] = ProblemContent() },
    };

    static OpenApiMediaType ProblemContent() => new() { Schema = new OpenApiSchemaReference("ProblemDetails") };

    /// <summary>The kinds of problem an answer of this status can be, as an example of each and a list in its description.</summary>
    static void DeclareProblemTypes(OpenApiResponse response, OpenApiMediaType problem, int status, bool idempotent)
    {
        var kinds = ProblemTypes.Of(status, idempotent).ToList();
        if (kinds.Count == 0) return;
        if (kinds.Contains(ProblemTypes.InvalidFields)) problem.Schema = new OpenApiSchemaReference("HttpValidationProblemDetails");
        problem.Examples ??= new Dictionary<string, IOpenApiExample>();
        foreach (var kind in kinds)
            problem.Examples[kind.Name] = new OpenApiExample
            {
                Summary = kind.Title,
                Description = kind.Meaning,
                Value = new System.Text.Json.Nodes.JsonObject { ["type"] = kind.Uri, ["title"] = kind.Title, ["status"] = status },
            };
        response.Description = $"{response.Description} Problem types: {string.Join(", ", kinds.Select(k => $"{k.Uri} ({k.Meaning})"))}".TrimStart();
    }

    static readonly (string Status, string Description)[] KeyedProblems =
    [
        ("401", "No API key, or one that is unknown, revoked or malformed."),
        ("403", "The key's role or tenant may not do this."),
        ("429", "Too many requests for this key: wait Retry-After seconds."),
        ("503", ProblemMapper.OutageDetail),
    ];

    public static WebApplication UseThroughputApi(this WebApplication app)
    {
        // Answers hold tenants' usage, invoices and keys: no cache, shared or private, keeps them.
        app.Use((http, next) =>
        {
            http.Response.OnStarting(() =>
            {
                if (!http.Response.Headers.ContainsKey("Cache-Control")) http.Response.Headers.CacheControl = "no-store";
                return Task.CompletedTask;
            });
            return next(http);
        });
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseRequestLimits();
        app.UseAuthentication();
        app.UseRateLimiter();
        app.UseAuthorization();
        app.MapOpenApi().AllowAnonymous();
        app.MapScalarApiReference("/docs", o => o.WithTitle("Throughput API")).AllowAnonymous();
        return app;
    }
}
