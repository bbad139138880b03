using System.Text;

namespace Throughput.Finance;

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

    static void AppendRecord(StringBuilder csv, IEnumerable<string> fields)
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
        if (!WantsCsv(http)) return Results.Ok(rows);
        var csv = Csv.Write(columns.Select(c => c.Name), rows.Select(r => columns.Select(c => c.Value(r))));
        http.Response.Headers.ContentDisposition = $"attachment; filename=\"{fileName}.csv\"";
        return Results.Bytes(Csv.Utf8WithBom(csv), Csv.ContentType);
    }

    /// <summary>An instant as exports write it: UTC, to the second.</summary>
    public static string Instant(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
}
