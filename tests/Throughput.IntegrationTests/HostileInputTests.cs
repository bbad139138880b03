using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Throughput.Http;

namespace Throughput.IntegrationTests;

/// <summary>Malformed and hostile API requests: each gets a clear problem-details rejection, none a 500, none changes state.</summary>
[Collection(PlatformCollection.Name)]
public sealed class HostileInputTests(PlatformFixture platform)
{
    public enum Caller { Anonymous, Customer, OtherTenant, Operator, Finance, ServingNode, Forged, Malformed }

    public sealed record HostileRequest(string Name, Caller Caller, string Method, string Path, string? Body, HttpStatusCode Expected, string? ContentType = "application/json", string? IfMatch = null, string? IdempotencyKey = null)
    {
        public override string ToString() => Name;
    }

    const string Purchase = """{"name":"x","model":"gpt-4o","region":"REGION","type":"Global","ptu":1}""";

    public static TheoryData<HostileRequest> Cases() =>
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
        new("Idempotency-Key of 200 characters", Caller.Customer, "POST", "/v1/deployments", Purchase, HttpStatusCode.UnprocessableEntity, IdempotencyKey: new string('k', 200)),
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
        new("NUL in a deployment name", Caller.Customer, "POST", "/v1/deployments", Purchase.Replace("\"name\":\"x\"", "\"name\":\"a\\u0000b\""), HttpStatusCode.UnprocessableEntity),
        new("NUL in a tenant name", Caller.Operator, "POST", "/v1/operator/tenants", """{"tenantId":"t-nul-name","name":"a\u0000b","currency":"USD"}""", HttpStatusCode.UnprocessableEntity),
        new("a tenant named like the invoice register", Caller.Operator, "POST", "/v1/operator/tenants", """{"tenantId":"invoice-register","name":"x","currency":"USD"}""", HttpStatusCode.BadRequest),
        new("a tenant named like the staff stream", Caller.Operator, "POST", "/v1/operator/tenants", """{"tenantId":"staff","name":"x","currency":"USD"}""", HttpStatusCode.BadRequest),
        new("a tenant named like an invoice", Caller.Operator, "POST", "/v1/operator/tenants", """{"tenantId":"inv-acme-202611","name":"x","currency":"USD"}""", HttpStatusCode.BadRequest),
        new("draft of the year 9999", Caller.Customer, "GET", "/v1/invoices/draft?month=9999-12", null, HttpStatusCode.UnprocessableEntity),
        new("sell-through of the year 9999", Caller.Finance, "GET", "/v1/finance/sell-through?month=9999-12", null, HttpStatusCode.UnprocessableEntity),
        new("utilization of the year 9999", Caller.Finance, "GET", "/v1/finance/utilization?month=9999-12", null, HttpStatusCode.UnprocessableEntity),
        new("accrued revenue of the year 9999", Caller.Finance, "GET", "/v1/finance/accrued?month=9999-12", null, HttpStatusCode.UnprocessableEntity),
        new("register of the year 9999", Caller.Finance, "GET", "/v1/finance/invoices?month=9999-12", null, HttpStatusCode.UnprocessableEntity),
        new("register page of no rows", Caller.Finance, "GET", "/v1/finance/invoices?limit=0", null, HttpStatusCode.BadRequest),
        new("tenant list page of a million rows", Caller.Operator, "GET", "/v1/operator/tenants?limit=1000000", null, HttpStatusCode.BadRequest),
        new("register page of a million rows", Caller.Finance, "GET", "/v1/finance/invoices?limit=1000000", null, HttpStatusCode.BadRequest),
        new("register page size in words", Caller.Finance, "GET", "/v1/finance/invoices?limit=many", null, HttpStatusCode.BadRequest),
        new("credit notes after a negative number", Caller.Finance, "GET", "/v1/finance/credit-notes?after=-1", null, HttpStatusCode.BadRequest),
        new("revenue from the year 1", Caller.Finance, "GET", "/v1/finance/revenue?from=0001-01", null, HttpStatusCode.UnprocessableEntity),
        new("usage up to the year 1", Caller.Customer, "GET", "/v1/deployments/DEPLOYMENT/usage?to=0001-01-01", null, HttpStatusCode.UnprocessableEntity),
        new("Idempotency-Key with a control character", Caller.Customer, "POST", "/v1/deployments", Purchase, HttpStatusCode.UnprocessableEntity, IdempotencyKey: "key\u0001"),
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Hostile_requests_are_refused_clearly_and_change_nothing(HostileRequest c)
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
        if (c.IdempotencyKey is not null) request.Headers.TryAddWithoutValidation("Idempotency-Key", c.IdempotencyKey);
        var response = await client.SendAsync(request);

        Assert.Equal(c.Expected, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal((int)c.Expected, problem.GetProperty("status").GetInt32());
        // The problem's kind is one the document declares for the status; a 415 has no kind of ours and says about:blank.
        Assert.Contains(problem.GetProperty("type").GetString(), c.Expected == HttpStatusCode.UnsupportedMediaType
            ? ["about:blank"] : ProblemTypes.Of((int)c.Expected, idempotent: true).Select(k => k.Uri));
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
        Assert.Equal(ProblemTypes.RateLimited.Uri, (await limited[0].Content.ReadFromJsonAsync<JsonElement>()).GetProperty("type").GetString());
        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
        Assert.Equal(HttpStatusCode.OK, (await neighbour.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task A_suspended_tenant_cannot_grow_or_buy_but_may_shrink_and_release()
    {
        var (tenantId, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 60);
        var deployment = await PlatformFixture.BuyAsync(customer, region, 2);
        (await platform.Operator().PostAsJsonAsync($"/v1/operator/tenants/{tenantId}/suspend", new { reason = "unpaid" })).EnsureSuccessStatusCode();

        async Task<HttpResponseMessage> WithETag(HttpMethod method, string path, object? body)
        {
            var current = await customer.GetAsync($"/v1/deployments/{deployment}");
            var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body) };
            request.Headers.IfMatch.Add(current.Headers.ETag!);
            return await customer.SendAsync(request);
        }
        var grow = await WithETag(HttpMethod.Post, $"/v1/deployments/{deployment}/resize", new { ptu = 50 });
        var spill = await customer.PutAsJsonAsync($"/v1/deployments/{deployment}/spillover", new { enabled = true });
        var buy = await customer.PostAsJsonAsync("/v1/deployments", new { name = "more", model = "gpt-4o", region, type = "Global", ptu = 1 });
        var reserve = await customer.PostAsJsonAsync("/v1/reservations", new { model = "gpt-4o", region, type = "Global", ptu = 1, term = "Month" });
        foreach (var refused in new[] { grow, spill, buy, reserve })
        {
            Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
            Assert.Contains("suspended", (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("detail").GetString());
        }
        var pools = await platform.Operator().GetFromJsonAsync<JsonElement[]>("/v1/operator/pools");
        Assert.Equal(2m, pools!.Single(p => p.GetProperty("region").GetString() == region).GetProperty("soldPtu").GetDecimal());

        Assert.Equal(HttpStatusCode.OK, (await WithETag(HttpMethod.Post, $"/v1/deployments/{deployment}/resize", new { ptu = 1 })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await WithETag(HttpMethod.Post, $"/v1/deployments/{deployment}/release", null)).StatusCode);
    }

    [Fact]
    public async Task A_reservation_retried_with_the_same_key_and_another_body_is_refused()
    {
        var (_, customer) = await platform.NewTenantAsync();
        var region = await platform.NewPoolAsync("gpt-4o", 10);
        async Task<HttpResponseMessage> Reserve(decimal ptu)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/reservations") { Content = JsonContent.Create(new { model = "gpt-4o", region, type = "Global", ptu, term = "Month" }) };
            request.Headers.Add("Idempotency-Key", "reserve-once");
            return await customer.SendAsync(request);
        }

        var first = await Reserve(1);
        var again = await Reserve(1);
        var other = await Reserve(5);

        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        Assert.Equal(HttpStatusCode.Created, again.StatusCode);
        Assert.Equal((await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString(), (await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString());
        Assert.Equal(HttpStatusCode.UnprocessableEntity, other.StatusCode);
        Assert.Single((await customer.GetFromJsonAsync<JsonElement[]>("/v1/reservations"))!);
    }

    [Fact]
    public async Task Requests_without_a_valid_key_are_rate_limited_per_address_and_refusals_take_the_same_time_known_id_or_not()
    {
        var known = PlatformFixture.OperatorKey[..PlatformFixture.OperatorKey.IndexOf('.', StringComparison.Ordinal)] + ".wrong-secret";
        var unknown = "tpk_nosuchkey" + Guid.NewGuid().ToString("N")[..8] + ".wrong-secret";
        foreach (var token in new[] { known, unknown })
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var refused = await platform.Client(token).GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            // A floor the handler keeps by design, not a performance figure: below it, timing would tell the two apart.
            Assert.True(clock.Elapsed >= Throughput.Access.ApiKeyAuthenticationHandler.RefusalFloor, $"{token}: {clock.Elapsed}");
        }

        var anonymous = platform.Client(null);
        var responses = await Task.WhenAll(Enumerable.Range(0, 250).Select(_ => anonymous.GetAsync("/v1/models")));
        var limited = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.NotEmpty(limited);
        Assert.NotNull(limited[0].Headers.RetryAfter);
        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.Unauthorized, HttpStatusCode.TooManyRequests }));
        await Task.Delay(TimeSpan.FromSeconds(3)); // the address's budget refills before the next test calls without a key
    }

    [Fact]
    public async Task Started_from_another_directory_the_host_reads_its_settings_and_never_logs_a_query_string()
    {
        var exchange = $"tests.elsewhere.{Guid.NewGuid():N}"[..28];
        await using var host = new PlatformProcess(exchange, partitions: 1, roles: "Api",
            environment: new Dictionary<string, string> { ["Logging__LogLevel__Default"] = "Information" }) { WorkingDirectory = "/" };
        await host.StartAsync();
        using var client = new HttpClient { BaseAddress = host.Address };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", PlatformFixture.OperatorKey);

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models?apiKey=tpk_leaked.query-secret")).StatusCode);
        await Task.Delay(500);

        Assert.DoesNotContain("query-secret", host.Output, StringComparison.Ordinal);
        // appsettings.json quiets Microsoft.AspNetCore below Warning; without it, routing would log every endpoint at Information.
        Assert.DoesNotContain("Executing endpoint", host.Output, StringComparison.Ordinal);
        Assert.Contains("Now listening", host.Output, StringComparison.Ordinal); // the output is captured at all
    }

    [Fact]
    public async Task Api_answers_are_never_cached()
    {
        var (_, customer) = await platform.NewTenantAsync();
        foreach (var path in new[] { "/v1/models", "/v1/deployments", "/v1/invoices" })
            Assert.Equal("no-store", (await customer.GetAsync(path)).Headers.CacheControl?.ToString());
        Assert.Equal("no-store", (await platform.Client(null).GetAsync("/v1/models")).Headers.CacheControl?.ToString());
    }

    async Task<string> StaffKey(string role)
    {
        var issued = await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role, name = role });
        return (await issued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString()!;
    }
}
