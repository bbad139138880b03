using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Throughput.IntegrationTests;

/// <summary>
/// The OpenAPI document is a contract integrators generate clients from: every status an operation answers must be
/// one it documents. Each operation is called by every kind of caller (none, a tenant, finance, an operator) with what
/// a client gets wrong most (ids that do not exist, an empty body, a body that is not JSON) and with the documented
/// example where sending it changes nothing, and every answer is checked
/// against the operation's responses. Operations that act without any input are called with ids that do not exist, so
/// nothing in the shared host changes.
/// </summary>
[Collection(PlatformCollection.Name)]
public sealed class ApiContractTests(PlatformFixture platform)
{
    [Fact]
    public async Task Every_status_an_operation_answers_is_one_its_document_declares()
    {
        var document = await platform.OpenApiDocumentAsync();
        var (_, tenant) = await platform.NewTenantAsync();
        var issued = await platform.Operator().PostAsJsonAsync("/v1/operator/keys", new { role = "Finance", name = "contract test" });
        issued.EnsureSuccessStatusCode();
        var finance = platform.Client((await issued.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString());
        var callers = new (string Name, HttpClient Client)[] { ("anonymous", platform.Client(null)), ("tenant", tenant), ("finance", finance), ("operator", platform.Operator()) };

        List<string> undocumented = [];
        var calls = 0;
        var exampled = 0;
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        foreach (var operation in path.Value.EnumerateObject())
        {
            var documented = operation.Value.GetProperty("responses").EnumerateObject().Select(r => r.Name).ToHashSet();
            var url = Placeholders(path.Name);
            string?[] bodies = operation.Value.TryGetProperty("requestBody", out var requestBody) ? ["{}", "{not json"] : [null];
            // Valid input too: the documented example, where the call changes nothing (ids that do not exist, or the estimate).
            if (ExampleOf(document, requestBody) is { } example && (path.Name.Contains('{', StringComparison.Ordinal) || path.Name == "/v1/capacity/estimate"))
            {
                bodies = [.. bodies, example];
                exampled++;
            }
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
        Assert.True(exampled >= 4, $"only {exampled} operations sent their example"); // resize, pool capacity, credit note, estimate
        Assert.True(undocumented.Count == 0, $"{undocumented.Count} answers not in the document:\n{string.Join("\n", undocumented)}");
    }

    [Fact]
    public async Task Every_request_body_has_an_example_with_exactly_its_fields()
    {
        var document = await platform.OpenApiDocumentAsync();
        var schemas = document.GetProperty("components").GetProperty("schemas");
        List<string> missing = [];
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        foreach (var operation in path.Value.EnumerateObject())
        {
            if (!operation.Value.TryGetProperty("requestBody", out var body)) continue;
            var reference = body.GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString()!;
            var name = reference[(reference.LastIndexOf('/') + 1)..];
            var schema = schemas.GetProperty(name);
            if (!schema.TryGetProperty("examples", out var examples)) missing.Add($"{operation.Name.ToUpperInvariant()} {path.Name}: {name} has no example");
            else if (!examples[0].EnumerateObject().Select(p => p.Name).Order().SequenceEqual(schema.GetProperty("properties").EnumerateObject().Select(p => p.Name).Order()))
                missing.Add($"{operation.Name.ToUpperInvariant()} {path.Name}: {name}'s example does not have exactly its fields");
        }
        Assert.True(missing.Count == 0, string.Join("\n", missing.Distinct()));
    }

    [Fact]
    public async Task Every_field_of_every_schema_has_a_description_and_every_instant_an_example()
    {
        var document = await platform.OpenApiDocumentAsync();
        List<string> undescribed = [];
        var schemas = document.GetProperty("components").GetProperty("schemas").EnumerateObject().ToList();
        foreach (var schema in schemas) Walk(schema.Name, schema.Value);
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        foreach (var operation in path.Value.EnumerateObject())
        foreach (var content in Contents(operation.Value))
            if (content.Value.TryGetProperty("schema", out var inline)) Walk($"{operation.Name.ToUpperInvariant()} {path.Name} {content.Name}", inline);
        Assert.True(schemas.Count > 30, $"only {schemas.Count} schemas");
        Assert.True(undescribed.Count == 0, $"{undescribed.Count} fields without a description (an XML comment on the member or its record's <param>):\n{string.Join("\n", undescribed.Distinct().Order(StringComparer.Ordinal))}");

        // Objects nested in a schema (array items, inline objects, compositions) are walked too: every field a client reads or writes.
        void Walk(string where, JsonElement schema)
        {
            if (schema.ValueKind != JsonValueKind.Object) return;
            if (schema.TryGetProperty("properties", out var properties))
                foreach (var field in properties.EnumerateObject())
                {
                    if (!field.Value.TryGetProperty("description", out var description) || string.IsNullOrWhiteSpace(description.GetString()))
                        undescribed.Add($"{where}.{field.Name}");
                    if (field.Value.TryGetProperty("format", out var format) && format.GetString() == "date-time" && !field.Value.TryGetProperty("examples", out _))
                        undescribed.Add($"{where}.{field.Name} (an instant without an example)");
                    Walk($"{where}.{field.Name}", field.Value);
                }
            foreach (var nested in (string[])["items", "additionalProperties"])
                if (schema.TryGetProperty(nested, out var inner)) Walk($"{where}[]", inner);
            foreach (var composition in (string[])["allOf", "anyOf", "oneOf"])
                if (schema.TryGetProperty(composition, out var parts))
                    foreach (var part in parts.EnumerateArray()) Walk(where, part);
        }

        static IEnumerable<JsonProperty> Contents(JsonElement operation)
        {
            if (operation.TryGetProperty("requestBody", out var body) && body.TryGetProperty("content", out var requested))
                foreach (var c in requested.EnumerateObject()) yield return c;
            foreach (var response in operation.GetProperty("responses").EnumerateObject())
                if (response.Value.TryGetProperty("content", out var answered))
                    foreach (var c in answered.EnumerateObject()) yield return c;
        }
    }

    /// <summary>The example of a request body's schema, if the document gives one.</summary>
    static string? ExampleOf(JsonElement document, JsonElement requestBody)
    {
        if (requestBody.ValueKind != JsonValueKind.Object || !requestBody.TryGetProperty("content", out var content)
            || !content.TryGetProperty("application/json", out var json) || !json.GetProperty("schema").TryGetProperty("$ref", out var reference))
            return null;
        var schema = document.GetProperty("components").GetProperty("schemas").GetProperty(reference.GetString()!.Split('/')[^1]);
        return schema.TryGetProperty("examples", out var examples) ? examples[0].GetRawText() : null;
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
