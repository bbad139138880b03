namespace Throughput.Catalog;

public static class Models
{
    public static IEndpointRouteBuilder MapModels(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapGet("/v1/models", () => TypedResults.Ok(catalog.Models))
            .WithTags("Catalog").WithName("ListModels")
            .WithSummary("Models for sale with their rates per PTU, sellable amounts and prices.");
        return app;
    }
}
