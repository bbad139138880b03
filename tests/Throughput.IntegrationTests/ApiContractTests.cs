using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Throughput.IntegrationTests;

/// <summary>
/// The OpenAPI document is a contract integrators generate clients from: every status an operation answers must be
/// one it documents. Each operation is called by every kind of caller (none, a tenant, finance, an operator) with what
/// a client gets wrong most (ids that do not exist, an empty body, a body that is not JSON), and every answer is checked
/// against the operation's responses. Operations that act without any input are called with ids that do not exist, so
/// nothing in the shared host changes.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class ApiContractTests(PlatformFixture platform)
{
    [Fact]
    public async Task Every_status_an_operation_answers_is_one_its_document_declares()
    {
        var document = await platform.Client(null).GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var (_, tenant) = await platform.NewTenantAsync();
        var issued = await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "Finance", name = "contract test" });
        issued.EnsureSuccessStatusCode();
        var finance = platform.Client((await issued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString());
        var callers = new (string Name, HttpClient Client)[] { ("anonymous", platform.Client(null)), ("tenant", tenant), ("finance", finance), ("operator", platform.Operator()) };

        List<string> undocumented = [];
        var calls = 0;
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        foreach (var operation in path.Value.EnumerateObject())
        {
            var documented = operation.Value.GetProperty("responses").EnumerateObject().Select(r => r.Name).ToHashSet();
            var url = Placeholders(path.Name);
            string?[] bodies = operation.Value.TryGetProperty("requestBody", out _) ? ["{}", "{not json"] : [null];
            foreach (var (caller, client) in callers)
            foreach (var body in bodies)
            {
                using var request = new HttpRequestMessage(new HttpMethod(operation.Name.ToUpperInvariant()), url);
                if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
                using var response = await client.SendAsync(request);
                calls++;
                var status = ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (!documented.Contains(status))
                    undocumented.Add($"{operation.Name.ToUpperInvariant()} {path.Name} as {caller}{(body is null ? "" : $" with {body}")}: {status}, documented {string.Join(", ", documented.Order())}");
            }
        }
        Assert.True(calls > 100, $"only {calls} calls");
        Assert.True(undocumented.Count == 0, $"{undocumented.Count} answers not in the document:\n{string.Join("\n", undocumented)}");
    }

    [Fact]
    public async Task Every_request_body_has_an_example_and_every_field_of_it_a_description()
    {
        var document = await platform.Client(null).GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var schemas = document.GetProperty("components").GetProperty("schemas");
        List<string> missing = [];
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        foreach (var operation in path.Value.EnumerateObject())
        {
            if (!operation.Value.TryGetProperty("requestBody", out var body)) continue;
            var reference = body.GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString()!;
            var name = reference[(reference.LastIndexOf('/') + 1)..];
            var schema = schemas.GetProperty(name);
            if (!schema.TryGetProperty("examples", out _)) missing.Add($"{operation.Name.ToUpperInvariant()} {path.Name}: {name} has no example");
            foreach (var field in schema.GetProperty("properties").EnumerateObject())
                if (!field.Value.TryGetProperty("description", out _)) missing.Add($"{operation.Name.ToUpperInvariant()} {path.Name}: {name}.{field.Name} has no description");
        }
        Assert.True(missing.Count == 0, string.Join("\n", missing.Distinct()));
    }

    /// <summary>Every path parameter filled with a value no resource has (a month that is not one).</summary>
    static string Placeholders(string template)
    {
        var url = new StringBuilder();
        for (var i = 0; i < template.Length; i++)
        {
            if (template[i] != '{') { url.Append(template[i]); continue; }
            var end = template.IndexOf('}', i);
            url.Append("no-such-").Append(template[(i + 1)..end].ToLowerInvariant());
            i = end;
        }
        return url.ToString();
    }
}
