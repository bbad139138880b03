using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Throughput.IntegrationTests;

/// <summary>Malformed and hostile API requests: each gets a clear problem-details rejection, none a 500, none changes state.</summary>
[Collection(PlatformCollection.Name)]
public sealed class HostileInputTests(PlatformFixture platform)
{
    public enum Caller { Anonymous, Customer, OtherTenant, Operator, Finance, ServingNode, Forged, Malformed }

    public sealed record Case(string Name, Caller Caller, string Method, string Path, string? Body, HttpStatusCode Expected, string? ContentType = "application/json", string? IfMatch = null, string? IdempotencyKey = null)
    {
        public override string ToString() => Name;
    }

    const string Purchase = """{"name":"x","model":"gpt-4o","region":"REGION","type":"Global","ptu":1}""";

    public static TheoryData<Case> Cases() =>
    [
        new("broken JSON", Caller.Customer, "POST", "/v1/deployments", "{\"name\":", HttpStatusCode.BadRequest),
        new("not JSON at all", Caller.Customer, "POST", "/v1/deployments", "name=x&ptu=1", HttpStatusCode.BadRequest),
        new("array instead of object", Caller.Customer, "POST", "/v1/deployments", "[1,2,3]", HttpStatusCode.BadRequest),
        new("null body", Caller.Customer, "POST", "/v1/deployments", "null", HttpStatusCode.BadRequest),
        new("empty body", Caller.Customer, "POST", "/v1/deployments", "", HttpStatusCode.BadRequest),
        new("string for a number", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("\"ptu\":1", "\"ptu\":\"lots\""), HttpStatusCode.BadRequest),
        new("negative amount", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("\"ptu\":1", "\"ptu\":-3"), HttpStatusCode.BadRequest),
        new("overflowing amount", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("\"ptu\":1", "\"ptu\":1e300"), HttpStatusCode.BadRequest),
        new("more decimals than sellable", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("\"ptu\":1", "\"ptu\":0.123456789"), HttpStatusCode.BadRequest),
        new("unknown field", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("\"ptu\":1", "\"ptu\":1,\"discount\":100"), HttpStatusCode.BadRequest),
        new("enum out of range", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("Global", "Galactic"), HttpStatusCode.BadRequest),
        new("enum as a number", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("\"Global\"", "7"), HttpStatusCode.BadRequest),
        new("SQL in the region", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("REGION", "eastus'; drop table throughput.mt_events;--"), HttpStatusCode.BadRequest),
        new("SQL in the model", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("gpt-4o", "gpt-4o' or '1'='1"), HttpStatusCode.BadRequest),
        new("unicode look-alike region", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("REGION", "еastus"), HttpStatusCode.BadRequest),
        new("JSON nested 200 deep", Caller.Customer, "POST", "/v1/deployments", new string('[', 200) + new string(']', 200), HttpStatusCode.BadRequest),
        new("a 2 MB body", Caller.Customer, "POST", "/v1/deployments", "{\"name\":\"" + new string('x', 2 << 20) + "\"}", HttpStatusCode.RequestEntityTooLarge),
        new("text/plain body", Caller.Customer, "POST", "/v1/deployments", Purchase, HttpStatusCode.UnsupportedMediaType, "text/plain"),
        new("Idempotency-Key of 200 characters", Caller.Customer, "POST", "/v1/deployments", Purchase, HttpStatusCode.BadRequest, IdempotencyKey: new string('k', 200)),
        new("no API key", Caller.Anonymous, "GET", "/v1/deployments", null, HttpStatusCode.Unauthorized),
        new("forged secret for a real key id", Caller.Forged, "GET", "/v1/deployments", null, HttpStatusCode.Unauthorized),
        new("malformed Authorization header", Caller.Malformed, "GET", "/v1/deployments", null, HttpStatusCode.Unauthorized),
        new("tenant calling an operator endpoint", Caller.Customer, "GET", "/v1/operator/tenants", null, HttpStatusCode.Forbidden),
        new("tenant minting staff keys", Caller.Customer, "POST", "/v1/operator/keys", """{"role":"Operator","name":"me"}""", HttpStatusCode.Forbidden),
        new("finance buying PTUs", Caller.Finance, "POST", "/v1/deployments", Purchase, HttpStatusCode.Forbidden),
        new("serving node buying PTUs", Caller.ServingNode, "POST", "/v1/deployments", Purchase, HttpStatusCode.Forbidden),
        new("tenant querying admission", Caller.Customer, "GET", "/v1/admission", null, HttpStatusCode.Forbidden),
        new("another tenant's deployment", Caller.OtherTenant, "GET", "/v1/deployments/DEPLOYMENT", null, HttpStatusCode.NotFound),
        new("another tenant's resize", Caller.OtherTenant, "POST", "/v1/deployments/DEPLOYMENT/resize", """{"ptu":5}""", HttpStatusCode.NotFound, IfMatch: "\"1\""),
        new("another tenant's usage", Caller.OtherTenant, "GET", "/v1/deployments/DEPLOYMENT/usage/totals", null, HttpStatusCode.NotFound),
        new("SQL in a path id", Caller.Customer, "GET", "/v1/deployments/x'%20or%20'1'='1", null, HttpStatusCode.NotFound),
        new("a 4,000-character path id", Caller.Customer, "GET", "/v1/deployments/" + new string('a', 4000), null, HttpStatusCode.NotFound),
        new("If-Match that is not an ETag", Caller.Customer, "POST", "/v1/deployments/DEPLOYMENT/resize", """{"ptu":2}""", HttpStatusCode.PreconditionFailed, IfMatch: "\"yesterday\""),
        new("resize without If-Match", Caller.Customer, "POST", "/v1/deployments/DEPLOYMENT/resize", """{"ptu":2}""", (HttpStatusCode)428),
        new("usage range that is not a time", Caller.Customer, "GET", "/v1/deployments/DEPLOYMENT/usage?from=yesterday", null, HttpStatusCode.BadRequest),
        new("usage range of a year", Caller.Customer, "GET", "/v1/deployments/DEPLOYMENT/usage?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", null, HttpStatusCode.BadRequest),
        new("negative admission estimate", Caller.ServingNode, "POST", "/v1/admission/DEPLOYMENT/check", """{"estimatedTokens":-5}""", HttpStatusCode.BadRequest),
        new("admission query of 1,001 ids", Caller.ServingNode, "POST", "/v1/admission/query", JsonSerializer.Serialize(new { deploymentIds = Enumerable.Range(0, 1001).Select(i => $"d{i}") }), HttpStatusCode.BadRequest),
        new("tenant id with capitals and SQL", Caller.Operator, "POST", "/v1/operator/tenants", """{"tenantId":"Robert'); DROP TABLE Students;--","name":"x","currency":"USD"}""", HttpStatusCode.BadRequest),
        new("serving node id with a slash", Caller.Operator, "PUT", "/v1/operator/serving-nodes/a%2Fb%20c", """{"regions":[],"tenants":[]}""", HttpStatusCode.BadRequest),
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Hostile_requests_are_refused_clearly_and_change_nothing(Case c)
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        var deployment = await PlatformFixture.BuyAsync(customer, region, 1);
        var client = c.Caller switch
        {
            Caller.Anonymous => platform.Client(null),
            Caller.Customer => customer,
            Caller.OtherTenant => (await platform.NewTenantAsync()).Client,
            Caller.Operator => platform.Operator(),
            Caller.Finance => platform.Client(await StaffKey("Finance")),
            Caller.ServingNode => platform.Client(await StaffKey("ServingNode")),
            Caller.Forged => platform.Client(PlatformFixture.OperatorKey[..PlatformFixture.OperatorKey.IndexOf('.', StringComparison.Ordinal)] + ".forged-secret"),
            _ => platform.Client(null),
        };
        if (c.Caller == Caller.Malformed) client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");

        var request = new HttpRequestMessage(new HttpMethod(c.Method), c.Path.Replace("DEPLOYMENT", deployment));
        if (c.Body is not null) request.Content = new StringContent(c.Body.Replace("REGION", region), Encoding.UTF8, c.ContentType!);
        if (c.IfMatch is not null) request.Headers.IfMatch.Add(EntityTagHeaderValue.Parse(c.IfMatch));
        if (c.IdempotencyKey is not null) request.Headers.Add("Idempotency-Key", c.IdempotencyKey);
        var response = await client.SendAsync(request);

        Assert.Equal(c.Expected, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal((int)c.Expected, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(problem.GetProperty("title").GetString()));

        // Nothing changed: the customer still has exactly the one deployment, unchanged.
        var mine = await customer.GetFromJsonAsync<JsonElement[]>("/v1/deployments");
        var only = Assert.Single(mine!);
        Assert.Equal((deployment, 1m, 1L), (only.GetProperty("id").GetString(), only.GetProperty("ptu").GetDecimal(), only.GetProperty("revision").GetInt64()));
    }

    [Fact]
    public async Task A_key_that_floods_the_API_is_rate_limited_and_others_are_not()
    {
        var (_, flooder) = await platform.NewTenantAsync();
        var (_, neighbour) = await platform.NewTenantAsync();

        var responses = await Task.WhenAll(Enumerable.Range(0, 250).Select(_ => flooder.GetAsync("/v1/models")));

        var limited = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.NotEmpty(limited);
        Assert.True(limited[0].Headers.RetryAfter is not null);
        Assert.Equal("application/problem+json", limited[0].Content.Headers.ContentType?.MediaType);
        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
        Assert.Equal(HttpStatusCode.OK, (await neighbour.GetAsync("/v1/models")).StatusCode);
    }

    async Task<string> StaffKey(string role)
    {
        var issued = await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role, name = role });
        return (await issued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString()!;
    }
}
