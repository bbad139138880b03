using System.Text.Json;
using System.Text.Json.Serialization;

namespace Throughput.Catalog;

public enum DeploymentType
{
    Global,
    DataZone,
    Regional,
}

public enum ReservationTerm
{
    Month,
    Year,
}

/// <summary>
/// Prices of one model in one currency. Reservation prices are per PTU for the whole term. <see cref="AdapterPerHour"/>
/// is the hosting of one adapter (a fine-tune of the model) per hour on an adapter deployment or set, on top of its PTUs.
/// </summary>
public sealed record PriceList(
    decimal PerPtuHour,
    decimal ReservationPerPtuMonth,
    decimal ReservationPerPtuYear,
    decimal SpilloverInputPerMillion,
    decimal SpilloverCachedPerMillion,
    decimal SpilloverOutputPerMillion,
    decimal AdapterPerHour = 0)
{
    public decimal ReservationPerPtu(ReservationTerm term) =>
        term == ReservationTerm.Month ? ReservationPerPtuMonth : ReservationPerPtuYear;
}

/// <summary>
/// A model as sold: its token rates per PTU and its prices. Weighted tokens:
/// (prompt − cached × cachedDeduction) + outputWeight × output.
/// </summary>
public sealed record ModelEntry(
    string Name,
    long InputTokensPerMinutePerPtu,
    decimal OutputWeight,
    decimal CachedDeduction,
    decimal MinimumPtu,
    decimal PtuIncrement,
    IReadOnlyDictionary<string, PriceList> Prices)
{
    public bool IsValidAmount(decimal ptu) => ptu >= MinimumPtu && (ptu - MinimumPtu) % PtuIncrement == 0;

    /// <summary>The smallest sellable amount that covers the given PTUs.</summary>
    public decimal RoundUpToIncrement(decimal ptu)
    {
        if (ptu <= MinimumPtu) return MinimumPtu;
        var steps = decimal.Ceiling((ptu - MinimumPtu) / PtuIncrement);
        return MinimumPtu + steps * PtuIncrement;
    }
}

/// <summary>The models for sale, loaded from configuration (Catalog/catalog.json unless <c>Catalog:Path</c> names another file).</summary>
public sealed record ModelCatalog(IReadOnlyList<ModelEntry> Models, IReadOnlyDictionary<DeploymentType, int> BurstSeconds)
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter() },
        ReadCommentHandling = JsonCommentHandling.Skip,
    };

    public ModelEntry? Find(string model) => Models.FirstOrDefault(m => string.Equals(m.Name, model, StringComparison.Ordinal));

    public int BurstSecondsFor(DeploymentType type) => BurstSeconds.TryGetValue(type, out var s) ? s : 60;

    public static ModelCatalog Load(string path)
    {
        var catalog = JsonSerializer.Deserialize<ModelCatalog>(File.ReadAllText(path), Json)
            ?? throw new InvalidOperationException($"Catalog {path} is empty");
        foreach (var m in catalog.Models)
        {
            if (m.InputTokensPerMinutePerPtu <= 0 || m.OutputWeight <= 0 || m.MinimumPtu <= 0 || m.PtuIncrement <= 0
                || m.CachedDeduction is < 0 or > 1 || m.Prices.Count == 0)
                throw new InvalidOperationException($"Catalog {path}: model {m.Name} has an invalid rate, amount or price list");
            // An adapter shares its base model's GPUs: hosting one can never cost what a PTU of GPU time does.
            if (m.Prices.Values.Any(p => p.AdapterPerHour < 0 || p.AdapterPerHour >= p.PerPtuHour))
                throw new InvalidOperationException($"Catalog {path}: model {m.Name} prices adapter hosting below zero or at a PTU-hour's price or more");
        }
        return catalog;
    }

    public static ModelCatalog FromConfiguration(IConfiguration configuration) =>
        Load(configuration["Catalog:Path"] is { Length: > 0 } path ? path : Path.Combine(AppContext.BaseDirectory, "Catalog", "catalog.json"));
}
