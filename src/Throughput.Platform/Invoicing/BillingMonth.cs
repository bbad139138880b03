using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Throughput.Deployments;
using Throughput.Http;

namespace Throughput.Invoicing;

/// <summary>A billing period: one calendar month in UTC, written <c>yyyy-MM</c>.</summary>
[JsonConverter(typeof(BillingMonthJsonConverter))]
public readonly record struct BillingMonth(int Year, int Month) : IComparable<BillingMonth>
{
    public DateTimeOffset Start => new(Year, Month, 1, 0, 0, 0, TimeSpan.Zero);

    public DateTimeOffset End => Start.AddMonths(1);

    public BillingMonth Next => Of(End);

    /// <summary>Months since year 0: sortable and comparable in a database index.</summary>
    public int Index => Year * 12 + Month - 1;

    public static BillingMonth FromIndex(int index) => new(index / 12, index % 12 + 1);

    public static BillingMonth Of(DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return new BillingMonth(utc.Year, utc.Month);
    }

    /// <summary>The months the platform bills: a month outside them in a request is refused, not computed.</summary>
    public static readonly BillingMonth First = new(2000, 1), Last = new(2999, 12);

    public static bool TryParse(string? text, out BillingMonth month)
    {
        month = default;
        if (!TryParseAny(text, out var parsed) || parsed < First || parsed > Last) return false;
        month = parsed;
        return true;
    }

    static bool TryParseAny(string? text, out BillingMonth month)
    {
        month = default;
        if (text is null || !DateTime.TryParseExact(text, "yyyy-MM", CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed)) return false;
        month = new BillingMonth(parsed.Year, parsed.Month);
        return true;
    }

    /// <summary>The problem with a month query parameter that <see cref="TryParse"/> refused: 422 when out of range, else 400.</summary>
    public static ProblemHttpResult Problem(string parameter, string? text) => TryParseAny(text, out _)
        ? Validation.Invalid(new Dictionary<string, string[]> { [parameter] = [$"Months from {First} to {Last} only."] }, 422)
        : Validation.Invalid(new Dictionary<string, string[]> { [parameter] = ["A month is written yyyy-MM."] });

    public static BillingMonth Parse(string text) =>
        TryParse(text, out var month) ? month : throw new FormatException($"'{text}' is not a month written yyyy-MM.");

    public int CompareTo(BillingMonth other) => Index.CompareTo(other.Index);

    public static bool operator <(BillingMonth a, BillingMonth b) => a.Index < b.Index;

    public static bool operator >(BillingMonth a, BillingMonth b) => a.Index > b.Index;

    public static bool operator <=(BillingMonth a, BillingMonth b) => a.Index <= b.Index;

    public static bool operator >=(BillingMonth a, BillingMonth b) => a.Index >= b.Index;

    public override string ToString() => $"{Year:D4}-{Month:D2}";
}

public sealed class BillingMonthJsonConverter : JsonConverter<BillingMonth>
{
    public override BillingMonth Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        BillingMonth.TryParse(reader.GetString(), out var month) ? month : throw new JsonException("A month is written yyyy-MM.");

    public override void Write(Utf8JsonWriter writer, BillingMonth value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());

    public override BillingMonth ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        Read(ref reader, typeToConvert, options);

    public override void WriteAsPropertyName(Utf8JsonWriter writer, BillingMonth value, JsonSerializerOptions options) =>
        writer.WritePropertyName(value.ToString());
}

/// <summary>Money rules: amounts are decimal in a currency, rounded half away from zero to its minor unit, once, per line.</summary>
public static class Money
{
    // ISO 4217 minor units of the currencies that differ from 2; everything else has cents.
    static readonly Dictionary<string, int> MinorUnits = new(StringComparer.Ordinal)
    {
        ["JPY"] = 0, ["KRW"] = 0, ["CLP"] = 0, ["ISK"] = 0, ["VND"] = 0,
        ["BHD"] = 3, ["KWD"] = 3, ["OMR"] = 3, ["JOD"] = 3, ["TND"] = 3,
    };

    public static int MinorUnitsOf(string currency) => MinorUnits.GetValueOrDefault(currency, 2);

    /// <summary>An amount as exports write it: the currency's minor units, invariant culture.</summary>
    public static string Text(decimal amount, string currency) =>
        amount.ToString("F" + MinorUnitsOf(currency), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Rounded half away from zero to the currency's minor unit, and held at that scale (268.80, not 268.8; 520 yen), so
    /// the events, the JSON and the CSV all write an amount with the currency's decimals.
    /// </summary>
    public static decimal Round(decimal amount, string currency)
    {
        var units = MinorUnitsOf(currency);
        return decimal.Round(amount, units, MidpointRounding.AwayFromZero) + ZeroAtScale[units];
    }

    /// <summary>Adding a zero of scale n lifts a decimal's scale to n: the sum takes the larger scale of the two.</summary>
    static readonly decimal[] ZeroAtScale = [0m, 0.0m, 0.00m, 0.000m, 0.0000m];
}

/// <summary>
/// The months a usage event's records were served in, with their tokens: its own parts when it crossed a month's end,
/// else the month its last record finished in. A struct enumerator: the daemon's folds walk one per usage entry.
/// </summary>
public readonly struct ServiceMonths(UsageMetered usage)
{
    public Enumerator GetEnumerator() => new(usage);

    public struct Enumerator(UsageMetered usage)
    {
        int _next;

        public (BillingMonth Month, TokenCounts Tokens) Current { get; private set; }

        public bool MoveNext()
        {
            if (usage.Months is not { Count: > 0 } parts)
            {
                if (_next++ > 0) return false;
                Current = (BillingMonth.Of(usage.LastFinishedAt), usage.Tokens);
                return true;
            }
            if (_next >= parts.Count) return false;
            var part = parts[_next++];
            Current = (BillingMonth.Parse(part.Month), part.Tokens);
            return true;
        }
    }
}
