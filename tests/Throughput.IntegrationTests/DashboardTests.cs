using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Throughput.IntegrationTests;

/// <summary>The dashboard's pages are public and hold no data; the API behind them still asks for a key.</summary>
[Collection(PlatformCollection.Name)]
public sealed class DashboardTests(PlatformFixture platform)
{
    [Theory]
    [InlineData("/")]
    [InlineData("/customer.html")]
    [InlineData("/js/app.js")]
    [InlineData("/vendor/chart.umd.min.js")]
    public async Task Pages_and_scripts_are_served_without_a_key_under_a_strict_content_security_policy(string path)
    {
        var response = await platform.Client(null).GetAsync(path);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("default-src 'self'", response.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_api_behind_the_pages_still_requires_a_key()
    {
        Assert.Equal(HttpStatusCode.Unauthorized, (await platform.Client(null).GetAsync("/v1/me")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await platform.Client(null).GetAsync("/v1/deployments")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await platform.Client(null).GetAsync("/nothing-here.html")).StatusCode);
    }

    [Fact]
    public async Task A_key_learns_its_role_and_tenant_to_open_its_page()
    {
        var (tenantId, customer) = await platform.NewTenantAsync();

        var tenant = await customer.GetFromJsonAsync<JsonElement>("/v1/me");
        var op = await platform.Operator().GetFromJsonAsync<JsonElement>("/v1/me");

        Assert.Equal("Tenant", tenant.GetProperty("role").GetString());
        Assert.Equal(tenantId, tenant.GetProperty("tenantId").GetString());
        Assert.Equal("Operator", op.GetProperty("role").GetString());
        Assert.Equal(JsonValueKind.Null, op.GetProperty("tenantId").ValueKind);
    }
}
