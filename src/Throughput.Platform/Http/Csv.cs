using System.Text;

namespace Throughput.Http;

/// <summary>
/// RFC 4180 CSV: a header row, CRLF after every record, a field quoted when it holds a comma, a quote, CR or LF,
/// quotes inside doubled. Written with a UTF-8 byte order mark so spreadsheets read non-ASCII names right. Text that a
/// spreadsheet would run as a formula (customer-chosen names starting with =, +, -, @) gets a leading apostrophe,
/// as OWASP advises for CSV injection; numbers, negative ones included, stay as they are.
/// </summary>
public static class Csv
{
    public const string ContentType = "text/csv; charset=utf-8; header=present";

    public static string Write(IEnumerable<string> header, IEnumerable<IEnumerable<string>> rows)
    {
        var csv = new StringBuilder();
        AppendRecord(csv, header);
        foreach (var row in rows) AppendRecord(csv, row);
        return csv.ToString();
    }

    public static string Field(string value)
    {
        if (LooksLikeFormula(value)) value = "'" + value;
        return value.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : value;
    }

    static bool LooksLikeFormula(string value) =>
        value.Length > 0 && value[0] is '=' or '+' or '-' or '@' or '\t' or '\r'
        && !decimal.TryParse(value, System.Globalization.NumberStyles.Number, System.Globalization.CultureInfo.InvariantCulture, out _);

    internal static void AppendRecord(StringBuilder csv, IEnumerable<string> fields)
    {
        var first = true;
        foreach (var field in fields)
        {
            if (!first) csv.Append(',');
            csv.Append(Field(field));
            first = false;
        }
        csv.Append("\r\n");
    }

    public static byte[] Utf8WithBom(string csv) => [.. Encoding.UTF8.GetPreamble(), .. Encoding.UTF8.GetBytes(csv)];
}

/// <summary>A column of a finance view: its CSV header and how a row shows in it.</summary>
public sealed record Column<T>(string Name, Func<T, string> Value);

public static class Tables
{
    /// <summary>JSON by default; CSV for <c>?format=csv</c> or <c>Accept: text/csv</c>.</summary>
    public static bool WantsCsv(HttpContext http) =>
        string.Equals(http.Request.Query["format"], "csv", StringComparison.OrdinalIgnoreCase)
        || http.Request.Headers.Accept.Any(a => a?.Contains("text/csv", StringComparison.OrdinalIgnoreCase) == true);

    public static IResult Respond<T>(HttpContext http, IReadOnlyList<T> rows, string fileName, IReadOnlyList<Column<T>> columns)
    {
        if (!WantsCsv(http)) return TypedResults.Ok(rows);
        var csv = Csv.Write(columns.Select(c => c.Name), rows.Select(r => columns.Select(c => c.Value(r))));
        http.Response.Headers.ContentDisposition = $"attachment; filename=\"{fileName}.csv\"";
        return Results.Bytes(Csv.Utf8WithBom(csv), Csv.ContentType);
    }

    public const int DefaultPageSize = 500;
    public const int MaxPageSize = 5_000;

    /// <summary>
    /// A register in number order, sized by its answer: JSON is one page of <c>?limit=</c> rows (default 500, at most
    /// 5,000) after the number <c>?after=</c>, with the next page's address in a <c>Link: &lt;…&gt;; rel="next"</c> header
    /// while rows remain; CSV is the whole register, streamed page by page.
    /// </summary>
    /// <param name="page">Up to <c>take</c> rows whose number is above <c>after</c>, in number order.</param>
    public static Task<IResult> RespondPagedAsync<T>(HttpContext http, long? after, int? limit, Func<long, int, CancellationToken, Task<IReadOnlyList<T>>> page,
        Func<T, long> number, string fileName, IReadOnlyList<Column<T>> columns, CancellationToken ct) =>
        after is < 0
            ? Task.FromResult<IResult>(Validation.Invalid(new Dictionary<string, string[]> { ["after"] = ["A number from 0: the last one of the previous page."] }))
            : RespondPagedAsync(http, after ?? 0, limit, page, number, n => n.ToString(System.Globalization.CultureInfo.InvariantCulture), fileName, columns, ct);

    /// <summary>The same, for a list in the order of a text key (<c>?after=</c> the last key of the previous page).</summary>
    public static Task<IResult> RespondPagedAsync<T>(HttpContext http, string? after, int? limit, Func<string, int, CancellationToken, Task<IReadOnlyList<T>>> page,
        Func<T, string> key, string fileName, IReadOnlyList<Column<T>> columns, CancellationToken ct) =>
        RespondPagedAsync(http, after ?? "", limit, page, key, k => k, fileName, columns, ct);

    static async Task<IResult> RespondPagedAsync<T, TCursor>(HttpContext http, TCursor after, int? limit, Func<TCursor, int, CancellationToken, Task<IReadOnlyList<T>>> page,
        Func<T, TCursor> cursor, Func<TCursor, string> format, string fileName, IReadOnlyList<Column<T>> columns, CancellationToken ct)
    {
        if (limit is < 1 or > MaxPageSize)
            return Validation.Invalid(new Dictionary<string, string[]> { ["limit"] = [$"From 1 to {MaxPageSize} rows per page."] });
        if (WantsCsv(http))
        {
            http.Response.Headers.ContentDisposition = $"attachment; filename=\"{fileName}.csv\"";
            return Results.Stream(async body =>
            {
                await using var writer = new StreamWriter(body, new UTF8Encoding(encoderShouldEmitUTF8Identifier: true), leaveOpen: true);
                var text = new StringBuilder();
                Csv.AppendRecord(text, columns.Select(c => c.Name));
                for (var from = after; ;)
                {
                    var rows = await page(from, MaxPageSize, ct);
                    foreach (var row in rows) Csv.AppendRecord(text, columns.Select(c => c.Value(row)));
                    await writer.WriteAsync(text, ct);
                    text.Clear();
                    if (rows.Count < MaxPageSize) break;
                    from = cursor(rows[^1]);
                }
            }, Csv.ContentType);
        }
        var take = limit ?? DefaultPageSize;
        var found = await page(after, take + 1, ct);
        if (found.Count <= take) return TypedResults.Ok(found);
        var rows = found.Take(take).ToList();
        var query = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(http.Request.QueryString.Value);
        query["after"] = format(cursor(rows[^1]));
        query["limit"] = take.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var next = Microsoft.AspNetCore.WebUtilities.QueryHelpers.AddQueryString(http.Request.Path, query);
        http.Response.Headers.Link = $"<{next}>; rel=\"next\"";
        return TypedResults.Ok(rows);
    }

    /// <summary>A quantity as exports write it: up to six decimals, no trailing zeros, invariant culture.</summary>
    public static string Number(decimal value) => value.ToString("0.######", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>An instant as exports write it: UTC, to the second.</summary>
    public static string Instant(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
}
