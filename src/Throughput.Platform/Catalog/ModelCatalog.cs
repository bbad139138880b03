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
/// <param name="PerPtuHour">The price of one PTU for one hour, prorated to the second.</param>
/// <param name="ReservationPerPtuMonth">One PTU reserved for a month, paid at its start.</param>
/// <param name="ReservationPerPtuYear">One PTU reserved for a year, paid in 12 monthly installments.</param>
/// <param name="SpilloverInputPerMillion">Per 1M spilled prompt tokens not served from the cache.</param>
/// <param name="SpilloverCachedPerMillion">Per 1M spilled cached prompt tokens.</param>
/// <param name="SpilloverOutputPerMillion">Per 1M spilled output tokens.</param>
/// <param name="AdapterPerHour">Hosting one adapter for one hour, on top of its PTUs.</param>
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

    public PriceList Times(decimal factor) => factor == 1 ? this : new(PerPtuHour * factor, ReservationPerPtuMonth * factor,
        ReservationPerPtuYear * factor, SpilloverInputPerMillion * factor, SpilloverCachedPerMillion * factor, SpilloverOutputPerMillion * factor);
}

/// <summary>
/// A model as sold: its token rates per PTU and its prices. Weighted tokens:
/// (prompt − cached × cachedDeduction) + outputWeight × output.
/// </summary>
/// <param name="Name">The model's name, e.g. gpt-4o-mini.</param>
/// <param name="InputTokensPerMinutePerPtu">Weighted tokens (counted in prompt tokens) per minute one PTU admits.</param>
/// <param name="OutputWeight">How many weighted tokens one output token counts as.</param>
/// <param name="CachedDeduction">The share of a cached prompt token deducted from its weight (1: cached tokens cost nothing).</param>
/// <param name="MinimumPtu">The fewest PTUs a deployment may have.</param>
/// <param name="PtuIncrement">The step PTUs are bought in.</param>
/// <param name="Prices">The model's prices, per currency.</param>
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

/// <summary>
/// The models for sale, loaded from configuration (Catalog/catalog.json unless <c>Catalog:Path</c> names another file).
/// <paramref name="Geographies"/> name the regions a Data Zone deployment may be placed in; Global ones may go to any of them.
/// <paramref name="TypePriceFactors"/> scale a model's listed prices per deployment type (a missing type pays the listed price).
/// </summary>
public sealed record ModelCatalog(
    IReadOnlyList<ModelEntry> Models,
    IReadOnlyDictionary<DeploymentType, int> BurstSeconds,
    IReadOnlyDictionary<string, IReadOnlyList<string>>? Geographies = null,
    IReadOnlyDictionary<DeploymentType, decimal>? TypePriceFactors = null)
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter() },
        ReadCommentHandling = JsonCommentHandling.Skip,
    };

    public ModelEntry? Find(string model) => Models.FirstOrDefault(m => string.Equals(m.Name, model, StringComparison.Ordinal));

    public int BurstSecondsFor(DeploymentType type) => BurstSeconds.TryGetValue(type, out var s) ? s : 60;

    public decimal PriceFactorFor(DeploymentType type) => TypePriceFactors?.TryGetValue(type, out var f) == true ? f : 1;

    /// <summary>The model as a deployment of the given type is sold: its prices scaled by the type's factor.</summary>
    public ModelEntry? Find(string model, DeploymentType type) => Find(model) is { } entry && PriceFactorFor(type) is var f && f != 1
        ? entry with { Prices = entry.Prices.ToDictionary(p => p.Key, p => p.Value.Times(f)) }
        : Find(model);

    public string? GeographyOf(string region) =>
        Geographies?.FirstOrDefault(g => g.Value.Contains(region, StringComparer.Ordinal)).Key;

    /// <summary>
    /// The regions whose pools a deployment of this type, bought naming this region, may be placed in: Regional stays in its
    /// region, Data Zone in the region's geography, Global in every geography's regions. A region no geography names is a
    /// place of its own.
    /// </summary>
    public IReadOnlyList<string> PlacementRegions(DeploymentType type, string region) =>
        type == DeploymentType.Regional || GeographyOf(region) is not { } geography ? [region]
        : type == DeploymentType.DataZone ? Geographies![geography]
        : [.. Geographies!.Values.SelectMany(r => r).Distinct(StringComparer.Ordinal)];

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
        if (catalog.TypePriceFactors?.Values.Any(f => f <= 0) == true)
            throw new InvalidOperationException($"Catalog {path}: a deployment type's price factor must be above 0");
        return catalog;
    }

    public static ModelCatalog FromConfiguration(IConfiguration configuration) =>
        Load(configuration["Catalog:Path"] is { Length: > 0 } path ? path : Path.Combine(AppContext.BaseDirectory, "Catalog", "catalog.json"));
}
