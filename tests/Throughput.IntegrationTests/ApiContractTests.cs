using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Throughput.Http;

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
        List<string> mismatched = [];
        HashSet<string> problemTypes = [];
        var calls = 0;
        var exampled = 0;
        var shaped = 0;
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
                var call = $"{operation.Name.ToUpperInvariant()} {path.Name} as {caller}{(body is null ? "" : $" with {System.Text.RegularExpressions.Regex.Replace(body, @"\s+", " ")}")}: {status}";
                if (!documented.Contains(status))
                {
                    undocumented.Add($"{call}, documented {string.Join(", ", documented.Order())}");
                    continue;
                }
                var answer = await DocumentedAnswer.ReadAsync(response);
                if (answer.ProblemType is { } type) problemTypes.Add(type);
                var wrong = answer.Mismatches(document, operation.Value.GetProperty("responses").GetProperty(status));
                mismatched.AddRange(wrong.Select(w => $"{call}: {w}"));
                if (answer.Shaped && wrong.Count == 0) shaped++;
            }
        }
        Assert.True(calls > 100, $"only {calls} calls");
        Assert.True(exampled >= 4, $"only {exampled} operations sent their example"); // resize, pool capacity, credit note, estimate
        Assert.True(undocumented.Count == 0, $"{undocumented.Count} answers not in the document:\n{string.Join("\n", undocumented)}");
        Assert.True(mismatched.Count == 0, $"{mismatched.Count} answers unlike their documented response:\n{string.Join("\n", mismatched)}");
        Assert.True(shaped >= 20, $"only {shaped} success bodies checked against their schema");
        // The kinds these calls cannot miss: a refused key, a wrong role, a wrong body, an id that does not exist.
        foreach (var kind in (ProblemTypes.Kind[])[ProblemTypes.Unauthenticated, ProblemTypes.Forbidden, ProblemTypes.InvalidFields, ProblemTypes.NotFound])
            Assert.Contains(kind.Uri, problemTypes);
    }

    [Fact]
    public async Task Every_problem_type_is_declared_with_its_meaning()
    {
        var document = await platform.OpenApiDocumentAsync();
        var declared = document.GetProperty("paths").EnumerateObject()
            .SelectMany(p => p.Value.EnumerateObject())
            .SelectMany(o => o.Value.GetProperty("responses").EnumerateObject())
            .Where(r => r.Value.TryGetProperty("content", out var c) && c.TryGetProperty("application/problem+json", out _))
            .SelectMany(r => r.Value.GetProperty("content").GetProperty("application/problem+json").TryGetProperty("examples", out var examples)
                ? examples.EnumerateObject().Select(e => (Status: r.Name, Example: e)) : [])
            .ToList();
        foreach (var kind in ProblemTypes.All)
        {
            var seen = declared.Where(d => d.Example.Value.GetProperty("value").GetProperty("type").GetString() == kind.Uri).ToList();
            Assert.True(seen.Count > 0, $"{kind.Uri} is declared by no operation");
            Assert.All(seen, d => Assert.Equal(kind.Meaning, d.Example.Value.GetProperty("description").GetString()));
        }
        // Every documented problem answer names its kinds (405 or 415 would be about:blank, and no operation documents those).
        var unnamed = document.GetProperty("paths").EnumerateObject()
            .SelectMany(p => p.Value.EnumerateObject().SelectMany(o => o.Value.GetProperty("responses").EnumerateObject()
                .Where(r => r.Value.TryGetProperty("content", out var c) && c.TryGetProperty("application/problem+json", out var m) && !m.TryGetProperty("examples", out _))
                .Select(r => $"{o.Name.ToUpperInvariant()} {p.Name} {r.Name}")))
            .ToList();
        Assert.True(unnamed.Count == 0, $"problem answers with no declared type:\n{string.Join("\n", unnamed)}");
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
        var schema = DocumentedAnswer.Schema(document, reference.GetString()!);
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
