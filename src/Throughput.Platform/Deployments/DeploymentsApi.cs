using Throughput.Access;
using Throughput.Catalog;

namespace Throughput.Deployments;

public static class DeploymentsApi
{
    public static IEndpointRouteBuilder MapDeployments(this IEndpointRouteBuilder app, ModelCatalog catalog)
    {
        app.MapGroup("/v1/deployments").RequireAuthorization(Policies.Tenant).WithTags("Deployments")
            .MapReadDeployments()
            .MapPurchase(catalog)
            .MapResize()
            .MapRelease()
            .MapSpillover();
        return app;
    }
}
