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
        services.AddProblemDetails();
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
            return Task.CompletedTask;
        }).AddOperationTransformer((operation, context, _) =>
        {
            var metadata = context.Description.ActionDescriptor.EndpointMetadata;
            DeclareHeaders(operation, metadata.OfType<ContractHeaders>().Select(h => h.Header).ToHashSet(), metadata.OfType<Microsoft.AspNetCore.Authorization.IAllowAnonymous>().Any());
            return Task.CompletedTask;
        }).AddSchemaTransformer((schema, context, _) =>
        {
            if (RequestExamples.TryGetValue(context.JsonTypeInfo.Type, out var example)) schema.Examples = [System.Text.Json.Nodes.JsonNode.Parse(example)!];
            return Task.CompletedTask;
        }));
        return services;
    }

    /// <summary>One example of each body a client writes, as the API reference and generated clients show it.</summary>
    static readonly Dictionary<Type, string> RequestExamples = new()
    {
        [typeof(Deployments.PurchaseDeployment)] = """{"name": "chat", "model": "gpt-4o-mini", "region": "westus", "type": "Global", "ptu": 0.5, "spillover": false}""",
        [typeof(Deployments.ResizeDeployment)] = """{"ptu": 1.5}""",
        [typeof(Deployments.SetSpillover)] = """{"enabled": true}""",
        [typeof(Reservations.PurchaseReservation)] = """{"model": "gpt-4o-mini", "region": "westus", "type": "Global", "ptu": 1, "term": "Month"}""",
        [typeof(Capacity.EstimateCapacity)] = """{"model": "gpt-4o-mini", "requestsPerMinute": 60, "promptTokens": 800, "outputTokens": 200, "cacheHitRate": 0.25}""",
        [typeof(Capacity.SetPoolCapacity)] = """{"gpus": 2, "gpuKind": "A100-80GB"}""",
        [typeof(Tenants.CreateTenant)] = """{"tenantId": "acme", "name": "Acme Ltd", "currency": "USD"}""",
        [typeof(IssueStaffKey)] = """{"role": "Finance", "name": "month-end team"}""",
        [typeof(Metering.RegisterServingNode)] = """{"regions": ["westus"], "tenants": []}""",
        [typeof(Invoicing.IssueCreditNote)] = """{"amount": 12.50, "reason": "Outage on 3 November"}""",
        [typeof(Tenants.SuspendTenant)] = """{"reason": "Invoice 2026-10 unpaid after 60 days"}""",
        [typeof(Capacity.RecordCalibration)] = """{"ptuPerGpu": 12.4, "weightedTokensPerMinute": 3100000, "scheduler": "Flywheel", "tokenBudget": 2048}""",
        [typeof(Admission.AdmissionCheck)] = """{"estimatedTokens": 1200}""",
        [typeof(Contracts.AdmissionQuery)] = """{"deploymentIds": ["dep-3f9a1c", "dep-77b0e2"]}""",
        [typeof(Contracts.AdmissionLeaseRenewal)] = """{"demands": [{"deploymentId": "dep-3f9a1c", "tokensPerMinute": 45000}]}""",
        [typeof(Webhooks.RegisterWebhookEndpoint)] = """{"url": "https://hooks.acme.example/throughput", "eventTypes": ["deployment.throttled", "invoice.issued"], "description": "billing"}""",
    };

    /// <summary>
    /// The headers each operation's contract includes: Idempotency-Key and If-Match where the endpoint takes them, ETag on
    /// the success of those that return one, and on every operation that takes a key its 401 and 403 and the 429 of the
    /// per-key rate limit with its Retry-After.
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
        foreach (var (status, response) in operation.Responses)
        {
            if (headers.Contains(ContractHeader.ETag) && status.StartsWith('2') && response is OpenApiResponse success)
                (success.Headers ??= new Dictionary<string, IOpenApiHeader>())["ETag"] = new OpenApiHeader { Description = "The revision: send it back in If-Match to change what you read.", Schema = Text() };
            if (status == "503" && response is OpenApiResponse unavailable)
                (unavailable.Headers ??= new Dictionary<string, IOpenApiHeader>())["Retry-After"] = RetryAfter();
        }
        if (anonymous) return; // no key, no per-key limit
        foreach (var (status, description) in new[] { ("401", "No API key, or one that is unknown, revoked or malformed."), ("403", "The key's role or tenant may not do this.") })
            operation.Responses.TryAdd(status, new OpenApiResponse
            {
                Description = description,
                Content = new Dictionary<string, OpenApiMediaType> { ["application/problem+json"] = new() { Schema = new OpenApiSchemaReference("ProblemDetails") } },
            });
        // An endpoint's own 429 (the admission check's refusal) carries Retry-After as well.
        if (!operation.Responses.TryGetValue("429", out var limited))
            operation.Responses["429"] = limited = new OpenApiResponse
            {
                Description = "Too many requests for this key: wait Retry-After seconds.",
                Content = new Dictionary<string, OpenApiMediaType> { ["application/problem+json"] = new() { Schema = new OpenApiSchemaReference("ProblemDetails") } },
            };
        if (limited is OpenApiResponse refused) (refused.Headers ??= new Dictionary<string, IOpenApiHeader>())["Retry-After"] = RetryAfter();
    }

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
