using Throughput.Capacity;
using Throughput.Catalog;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class CatalogSpecs
{
    [Theory]
    [InlineData(0.01, 0.1)]
    [InlineData(0.1, 0.1)]
    [InlineData(0.11, 0.2)]
    [InlineData(4.8, 4.8)]
    [InlineData(4.81, 4.9)]
    public void Amounts_round_up_to_the_increment(double ptu, double expected) =>
        Assert.Equal((decimal)expected, Gpt4o.RoundUpToIncrement((decimal)ptu));

    [Fact]
    public void The_estimate_applies_cache_hits_and_output_weight()
    {
        // 60 rpm × (2,000 × (1 − 0.5) + 4 × 250) = 120,000 weighted/min = 48 PTU of gpt-4o
        var estimate = Estimate.Compute(Gpt4o, new EstimateCapacity("gpt-4o", 60, 2000, 250, 0.5m));
        Assert.Equal(new CapacityEstimate("gpt-4o", 120_000, 48, 120_000, 1), estimate);
    }

    [Fact]
    public void The_shipped_catalog_loads_with_the_published_rates()
    {
        var catalog = ModelCatalog.Load(Path.Combine(SettingsTests.RepositoryRoot(), "src", "Throughput.Platform", "Catalog", "catalog.json"));
        Assert.Equal(2500, catalog.Find("gpt-4o")!.InputTokensPerMinutePerPtu);
        Assert.Equal(37000, catalog.Find("gpt-4o-mini")!.InputTokensPerMinutePerPtu);
        Assert.Equal(8, catalog.Find("gpt-5")!.OutputWeight);
        Assert.Equal(4750, catalog.Find("gpt-5")!.InputTokensPerMinutePerPtu);
        Assert.All(catalog.Models, m => Assert.Equal((0.1m, 0.1m), (m.MinimumPtu, m.PtuIncrement)));
        Assert.All(catalog.Models, m => Assert.Contains("EUR", m.Prices.Keys));
        Assert.Equal(60, catalog.BurstSecondsFor(DeploymentType.Regional));
    }
}
