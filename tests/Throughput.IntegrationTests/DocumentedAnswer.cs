using System.Text.Json;

namespace Throughput.IntegrationTests;

/// <summary>
/// An HTTP answer as a client generated from the OpenAPI document reads it, and where it differs from the response the
/// document declares for its status: the media type, a problem's type and status, the headers, and a JSON body's shape
/// (each field declared, of its declared type, required ones present, enums within their values).
/// </summary>
public sealed record DocumentedAnswer(int Status, string? MediaType, IReadOnlySet<string> Headers, JsonElement? Body)
{
    public static async Task<DocumentedAnswer> ReadAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        var mediaType = response.Content.Headers.ContentType?.MediaType;
        JsonElement? body = null;
        if (text.Length > 0 && mediaType is "application/json" or "application/problem+json")
            body = JsonDocument.Parse(text).RootElement.Clone();
        var headers = response.Headers.Select(h => h.Key).Concat(response.Content.Headers.Select(h => h.Key)).ToHashSet(StringComparer.OrdinalIgnoreCase);
        return new DocumentedAnswer((int)response.StatusCode, text.Length == 0 ? null : mediaType, headers, body);
    }

    public string? ProblemType =>
        MediaType == "application/problem+json" && Body is { ValueKind: JsonValueKind.Object } problem && problem.TryGetProperty("type", out var type) ? type.GetString() : null;

    /// <summary>A success body the document gives a JSON schema for, so that its shape is checked.</summary>
    public bool Shaped => Status is >= 200 and < 300 && MediaType == "application/json" && Body is not null;

    public List<string> Mismatches(JsonElement document, JsonElement documented)
    {
        List<string> wrong = [];
        foreach (var header in documented.TryGetProperty("headers", out var headers) ? headers.EnumerateObject().Select(h => h.Name) : [])
            if (!Headers.Contains(header)) wrong.Add($"no {header} header");
        if (MediaType is null) return wrong;
        if (!documented.TryGetProperty("content", out var content))
        {
            wrong.Add($"a {MediaType} body where the document declares none");
            return wrong;
        }
        if (!content.TryGetProperty(MediaType, out var declared))
        {
            wrong.Add($"{MediaType}, documented {string.Join(", ", content.EnumerateObject().Select(c => c.Name))}");
            return wrong;
        }
        if (MediaType == "application/problem+json" && Body is { } problem)
        {
            if (!problem.TryGetProperty("status", out var status) || status.GetInt32() != Status) wrong.Add("a problem whose status is not the answer's");
            var types = declared.TryGetProperty("examples", out var examples)
                ? examples.EnumerateObject().Select(e => e.Value.GetProperty("value").GetProperty("type").GetString()).ToHashSet() : [];
            if (!types.Contains(ProblemType)) wrong.Add($"problem type {ProblemType ?? "(none)"}, declared {string.Join(", ", types)}");
        }
        if (Body is { } json && declared.TryGetProperty("schema", out var schema)) Shape(document, schema, json, "$", wrong);
        return wrong;
    }

    /// <summary>The schema a <c>$ref</c> names in the document's components.</summary>
    public static JsonElement Schema(JsonElement document, string reference) =>
        document.GetProperty("components").GetProperty("schemas").GetProperty(reference.Split('/')[^1]);

    static void Shape(JsonElement document, JsonElement schema, JsonElement value, string at, List<string> wrong)
    {
        if (schema.TryGetProperty("$ref", out var reference))
            schema = Schema(document, reference.GetString()!);
        foreach (var choice in (string[])["oneOf", "anyOf"])
            if (schema.TryGetProperty(choice, out var branches))
            {
                if (!branches.EnumerateArray().Any(b => { List<string> trial = []; Shape(document, b, value, at, trial); return trial.Count == 0; }))
                    wrong.Add($"{at} matches none of its {choice} schemas");
                return;
            }
        if (schema.TryGetProperty("allOf", out var parts))
            foreach (var part in parts.EnumerateArray()) Shape(document, part, value, at, wrong);
        if (schema.TryGetProperty("type", out var type) && !TypeFits(type, value))
        {
            wrong.Add($"{at} is {value.ValueKind}, declared {type.GetRawText()}");
            return;
        }
        if (schema.TryGetProperty("enum", out var values) && value.ValueKind == JsonValueKind.String
            && !values.EnumerateArray().Any(v => v.ValueKind == JsonValueKind.String && v.GetString() == value.GetString()))
            wrong.Add($"{at} is '{value.GetString()}', not one of {values.GetRawText()}");
        if (value.ValueKind == JsonValueKind.Object)
        {
            var properties = schema.TryGetProperty("properties", out var declared) ? declared : default;
            var open = schema.TryGetProperty("additionalProperties", out var additional) ? additional : default;
            foreach (var field in value.EnumerateObject())
            {
                if (properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(field.Name, out var fieldSchema))
                    Shape(document, fieldSchema, field.Value, $"{at}.{field.Name}", wrong);
                else if (open.ValueKind == JsonValueKind.Object)
                    Shape(document, open, field.Value, $"{at}.{field.Name}", wrong);
                else if (properties.ValueKind == JsonValueKind.Object && open.ValueKind != JsonValueKind.True)
                    wrong.Add($"{at}.{field.Name} is not declared");
            }
            foreach (var required in schema.TryGetProperty("required", out var names) ? names.EnumerateArray().Select(n => n.GetString()!) : [])
                if (!value.TryGetProperty(required, out _)) wrong.Add($"{at}.{required} is required but missing");
        }
        if (value.ValueKind == JsonValueKind.Array && schema.TryGetProperty("items", out var items))
        {
            var i = 0;
            foreach (var item in value.EnumerateArray().Take(50)) Shape(document, items, item, $"{at}[{i++}]", wrong);
        }
    }

    static bool TypeFits(JsonElement type, JsonElement value)
    {
        var declared = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()).ToHashSet() : [type.GetString()];
        return value.ValueKind switch
        {
            JsonValueKind.Null => declared.Contains("null"),
            JsonValueKind.String => declared.Contains("string"),
            JsonValueKind.True or JsonValueKind.False => declared.Contains("boolean"),
            JsonValueKind.Array => declared.Contains("array"),
            JsonValueKind.Object => declared.Contains("object"),
            JsonValueKind.Number => declared.Contains("number") || (declared.Contains("integer") && value.TryGetInt64(out _)),
            _ => false,
        };
    }
}
