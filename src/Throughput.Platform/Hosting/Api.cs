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
        }));
        return services;
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
