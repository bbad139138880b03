using Microsoft.AspNetCore.StaticFiles;
using Microsoft.Extensions.FileProviders;

namespace Throughput.Hosting;

/// <summary>
/// The dashboard's pages and scripts, served from wwwroot without a key: they hold no data, and every data call
/// they make goes to the API with the signed-in key. Runs before authorization so the fallback policy does not apply.
/// </summary>
public static class Dashboard
{
    public static WebApplication UseThroughputDashboard(this WebApplication app)
    {
        // Beside the assembly, not the working directory: the host is started as `dotnet …/Throughput.Platform.dll` from anywhere.
        var root = Path.Combine(AppContext.BaseDirectory, "wwwroot");
        if (!Directory.Exists(root)) return app; // a host built without the pages still serves the API
        var files = new PhysicalFileProvider(root);
        // Not on the API's paths: the file lookups cost a file-system call per GET, on the serving nodes' hot path too.
        app.UseWhen(http => !http.Request.Path.StartsWithSegments("/v1"), pages => pages.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files }).UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            ContentTypeProvider = new FileExtensionContentTypeProvider(),
            OnPrepareResponse = context =>
            {
                var headers = context.Context.Response.Headers;
                // The API key lives in sessionStorage: allow scripts from this host only, and no framing.
                headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
                headers.XContentTypeOptions = "nosniff";
                headers.CacheControl = "no-cache";
            },
        }));
        return app;
    }
}
