using System.Text;
using Throughput.Finance;
using Throughput.Http;
using Throughput.Invoicing;

namespace Throughput.Tests;

/// <summary>RFC 4180 as spreadsheets read it: header row, CRLF after every record, quoting only where needed.</summary>
public sealed class CsvSpecs
{
    [Fact]
    public void Fields_with_commas_quotes_or_line_breaks_are_quoted_with_inner_quotes_doubled()
    {
        var csv = Csv.Write(["name", "reason", "amount"],
        [
            ["plain", "no special characters", "1.00"],
            ["a, b", "say \"hi\"", "2.50"],
            ["line\r\nbreak", "lone\nfeed and lone\rreturn", ""],
            ["\"", " spaced ", "-0.01"],
        ]);

        Assert.Equal(
            "name,reason,amount\r\n" +
            "plain,no special characters,1.00\r\n" +
            "\"a, b\",\"say \"\"hi\"\"\",2.50\r\n" +
            "\"line\r\nbreak\",\"lone\nfeed and lone\rreturn\",\r\n" +
            "\"\"\"\", spaced ,-0.01\r\n",
            csv);
    }

    [Theory]
    [InlineData("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\"")]
    [InlineData("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0")]
    [InlineData("-2+3", "'-2+3")]
    [InlineData("@SUM(A1)", "'@SUM(A1)")]
    [InlineData("-12.50", "-12.50")]
    [InlineData("+3", "+3")]
    [InlineData("a=b", "a=b")]
    public void Text_a_spreadsheet_would_run_as_a_formula_is_defused_and_numbers_are_not(string field, string written) =>
        Assert.Equal(written, Csv.Field(field));

    [Fact]
    public void What_is_written_parses_back_to_the_same_fields()
    {
        string[][] rows = [["x,y", "\"q\"", "a\r\nb"], ["", "ü – é", "plain"]];
        var parsed = Parse(Csv.Write(["c1", "c2", "c3"], rows));
        Assert.Equal([["c1", "c2", "c3"], .. rows], parsed);
    }

    [Fact]
    public void The_bytes_start_with_a_UTF8_byte_order_mark_for_spreadsheets() =>
        Assert.Equal([0xEF, 0xBB, 0xBF, (byte)'a', (byte)'\r', (byte)'\n'], Csv.Utf8WithBom(Csv.Write(["a"], [])));

    [Fact]
    public void Months_parse_strictly_and_amounts_print_with_the_currencys_minor_units()
    {
        Assert.True(BillingMonth.TryParse("2026-02", out var february));
        Assert.Equal((new DateTimeOffset(2026, 2, 1, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero)), (february.Start, february.End));
        Assert.False(BillingMonth.TryParse("2026-13", out _));
        Assert.False(BillingMonth.TryParse("Feb 2026", out _));
        Assert.Equal("520.00", Money.Text(520m, "USD"));
        Assert.Equal("520", Money.Text(520m, "JPY"));
        Assert.Equal(0.13m, Money.Round(0.125m, "EUR"));
        Assert.Equal(-0.13m, Money.Round(-0.125m, "EUR"));
    }

    [Fact]
    public void Rounded_amounts_keep_the_currencys_scale_in_json()
    {
        Assert.Equal("268.80", System.Text.Json.JsonSerializer.Serialize(Money.Round(268.8m, "USD")));
        Assert.Equal("3.00", System.Text.Json.JsonSerializer.Serialize(Money.Round(3m, "EUR")));
        Assert.Equal("520", System.Text.Json.JsonSerializer.Serialize(Money.Round(519.6m, "JPY")));
        Assert.Equal("1.250", System.Text.Json.JsonSerializer.Serialize(Money.Round(1.25m, "KWD")));
    }

    /// <summary>A strict RFC 4180 reader, to show the writer's output round-trips.</summary>
    static List<string[]> Parse(string csv)
    {
        var records = new List<string[]>();
        var fields = new List<string>();
        var field = new StringBuilder();
        var quoted = false;
        for (var i = 0; i < csv.Length; i++)
        {
            var c = csv[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < csv.Length && csv[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else field.Append(c);
            }
            else if (c == '"') quoted = true;
            else if (c == ',') { fields.Add(field.ToString()); field.Clear(); }
            else if (c == '\r' && csv[i + 1] == '\n')
            {
                fields.Add(field.ToString());
                field.Clear();
                records.Add([.. fields]);
                fields.Clear();
                i++;
            }
            else field.Append(c);
        }
        return records;
    }
}
