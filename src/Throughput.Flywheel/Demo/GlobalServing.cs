using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;
using Throughput.Flywheel.Report;
using Throughput.Serving;

namespace Throughput.Flywheel.Demo;

/// <summary>What the demo's Global deployment showed: where the platform placed it, what each region served, and whether metering was exact.</summary>
public sealed record GlobalFigures(
    IReadOnlyDictionary<string, decimal> Placement, IReadOnlyList<(string Region, double Weighted, long LeaseTokensPerMinute)> Served,
    long TokensPerMinute, long Published, long Metered, bool MeteringMatched);

/// <summary>
/// The demo's Global deployment (#17): one customer buys it in the second region of the geography, whose pool has room for
/// only half of it, so the platform places it across both regions (or whole in the first, when that has room for all of it).
/// A Flywheel serving node in each region — its own registration, key, <see cref="AdmissionCache"/> with leases,
/// <see cref="AdmissionFeed"/>, <see cref="MeteringPublisher"/> and simulated GPU — gets half of the customer's traffic and
/// admits within its leased share of the deployment's rate.
/// </summary>
public sealed class GlobalServing : IAsyncDisposable
{
    /// <summary>The customer's PTUs as a share of the demo fleet's calibrated capacity.</summary>
    const double CapacityShare = 0.10;

    sealed record RegionNode(string Region, string ProducerId, AdmissionCache Cache, AdmissionFeed Feed, MeteringPublisher Publisher)
    {
        public AdmissionLimitChanged? Limit { get; set; }

        public Simulation? Simulation { get; set; }

        public long Records { get; set; }

        public long Prompt { get; set; }

        public long Cached { get; set; }

        public long Output { get; set; }
    }

    readonly List<RegionNode> _nodes = [];

    GlobalServing(Provisioned customer, string boughtIn, IReadOnlyDictionary<string, decimal> placement)
    {
        Customer = customer;
        BoughtIn = boughtIn;
        Placement = placement;
    }

    public Provisioned Customer { get; }

    public string BoughtIn { get; }

    public IReadOnlyDictionary<string, decimal> Placement { get; }

    /// <summary>The customer's level for a demo fleet of <paramref name="capacityPtu"/>: a tenth of it, at least 1 PTU.</summary>
    public static decimal PtuFor(decimal capacityPtu) => Math.Max(1, Math.Round(capacityPtu * (decimal)CapacityShare, 1));

    /// <summary>The room the first region's pool is given for the deployment: half of it (the second region has room for the rest).</summary>
    public static decimal FirstHalf(decimal ptu) => ptu - SecondHalf(ptu);

    static decimal SecondHalf(decimal ptu) => Math.Round(ptu / 2, 1);

    /// <summary>
    /// Opens the second region's pool with room for half of the deployment (the first region's has room for the other half),
    /// buys it in the second region, and starts a serving node in each region.
    /// </summary>
    public static async Task<GlobalServing> SetUpAsync(HttpClient op, Func<string, HttpClient> clientFor, Scenario scenario, IReadOnlyList<string> regions,
        decimal ptu, Uri broker, string meteringExchange, string run, CancellationToken ct)
    {
        var (first, second) = (regions[0], regions[1]);
        await PlatformSetup.EnsurePoolAsync(op, scenario.Model, first, FirstHalf(ptu), ct);
        await PlatformSetup.SetFreeAsync(op, scenario.Model, second, SecondHalf(ptu), ct);
        var customer = new Customer("Tailspin Global", Workload.Chat, ptu);
        var provisioned = await PlatformSetup.ProvisionAsync(op, clientFor, customer, scenario with { Region = second }, run + "g", ct);
        var deployment = await provisioned.Tenant.GetFromJsonAsync<JsonElement>($"/v1/deployments/{provisioned.DeploymentId}", ct);
        var placement = deployment.GetProperty("placement").EnumerateArray()
            .ToDictionary(p => p.GetProperty("region").GetString()!, p => p.GetProperty("ptu").GetDecimal(), StringComparer.Ordinal);
        var global = new GlobalServing(provisioned, second, placement);
        try
        {
            foreach (var region in regions)
            {
                var producer = $"flywheel-{run}-{region}";
                var access = await PlatformSetup.RegisterServingNodeAsync(op, producer, region, ct);
                var cache = new AdmissionCache(new AdmissionCacheOptions { Leases = true });
                var nodeBroker = access.Broker(broker);
                var feed = await AdmissionFeed.StartAsync(cache, clientFor(access.ApiKey), new AdmissionFeedOptions(nodeBroker) { Region = region, Model = scenario.Model }, ct);
                MeteringPublisher publisher;
                try
                {
                    publisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(nodeBroker, producer) { Exchange = meteringExchange }, ct);
                }
                catch
                {
                    await feed.DisposeAsync();
                    throw;
                }
                global._nodes.Add(new RegionNode(region, producer, cache, feed, publisher));
                global._nodes[^1].Limit = (await DemoRun.KnownLimitsAsync(feed, [provisioned], ct))[provisioned.DeploymentId];
            }
            return global;
        }
        catch
        {
            await global.DisposeAsync();
            throw;
        }
    }

    /// <summary>Each node's share of the load from <paramref name="start"/>: half of the customer's traffic, on one simulated GPU of the demo's kind.</summary>
    public void Start(FleetOptions fleet, DateTimeOffset start)
    {
        foreach (var (node, n) in _nodes.Select((node, n) => (node, n)))
        {
            var limit = node.Limit!;
            var tally = new Tally(start, TimeSpan.FromSeconds(1));
            tally.Follow(Customer.DeploymentId, Customer.Customer.Name, (double)limit.OutputWeight, (double)limit.CachedDeduction);
            var share = 1.0 / _nodes.Count;
            var arrivals = new Arrivals(Customer.DeploymentId, Customer.Customer.Workload, limit.TokensPerMinute * Customer.Customer.OfferedFactor * share,
                limit.TokensPerMinute * Customer.Customer.BacklogMinutes * share, (double)limit.OutputWeight, (double)limit.CachedDeduction, start, seed: 1000 + n);
            node.Simulation = new Simulation(new Fleet(fleet with { Nodes = 1 }, node.Cache), tally, [arrivals]);
        }
    }

    /// <summary>One iteration of each region's GPU; finished requests are metered by that region's node.</summary>
    public async Task StepAsync(DateTimeOffset at, CancellationToken ct)
    {
        foreach (var node in _nodes)
        {
            foreach (var sequence in node.Simulation!.Step(at).Finished)
            {
                var record = DemoRun.Metered(node.ProducerId, sequence);
                await node.Publisher.RecordAsync(record, ct);
                node.Records++;
                node.Prompt += record.PromptTokens;
                node.Cached += record.CachedTokens;
                node.Output += record.OutputTokens;
            }
        }
    }

    /// <summary>Flushes both publishers and prints what each region served and what the platform metered for the deployment.</summary>
    public async Task<GlobalFigures> ReportAsync(TextWriter output, DateTimeOffset end, CancellationToken ct)
    {
        foreach (var node in _nodes) await node.Publisher.FlushAsync(ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
        var rate = _nodes[0].Cache.Limit(Customer.DeploymentId)?.TokensPerMinute ?? 0;
        var served = _nodes.Select(n => (n.Region, n.Simulation!.Tally[Customer.DeploymentId].Sum(n.Simulation.Tally.Start, end).Weighted,
            n.Cache.Lease(Customer.DeploymentId)?.TokensPerMinute ?? 0)).ToList();
        var minutes = (end - _nodes[0].Simulation!.Tally.Start).TotalMinutes;
        output.WriteLine();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Global deployment: {Customer.Customer.Name} bought {Customer.Customer.Ptu} PTU (Global) in {BoughtIn} = {rate:N0} weighted tokens/min; " +
            $"placed {string.Join(" + ", Placement.Select(p => $"{p.Value} PTU in {p.Key}"))}; offered {Customer.Customer.OfferedFactor:0.#}× after a backlog of {Customer.Customer.BacklogMinutes:0.#} min, half to a serving node in each region"));
        foreach (var (region, weighted, lease) in served)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  served from {region,-14} {weighted,12:N0} weighted tokens ({weighted / minutes:N0}/min); its lease at the end {lease:N0}/min"));
        var total = served.Sum(s => s.Weighted);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  both regions     {total,12:N0} weighted tokens = {(rate > 0 ? total / (rate * minutes) : 0):0.000}× the purchased rate over {minutes:0.#} min (the opening burst included)"));

        var published = (Records: _nodes.Sum(n => n.Records), Prompt: _nodes.Sum(n => n.Prompt), Cached: _nodes.Sum(n => n.Cached), Output: _nodes.Sum(n => n.Output));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        JsonElement totals;
        do
        {
            totals = await PlatformSetup.TotalsAsync(Customer, ct);
            if (totals.GetProperty("records").GetInt64() >= published.Records) break;
            await Task.Delay(200, ct);
        }
        while (DateTime.UtcNow < deadline);
        var metered = (Records: totals.GetProperty("records").GetInt64(), Prompt: totals.GetProperty("promptTokens").GetInt64(),
            Cached: totals.GetProperty("cachedTokens").GetInt64(), Output: totals.GetProperty("outputTokens").GetInt64());
        var exact = metered == published;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  metering: published by both nodes {published.Records:N0} records, {published.Prompt:N0} prompt, {published.Cached:N0} cached, {published.Output:N0} output tokens; " +
            $"the platform metered {metered.Records:N0}, {metered.Prompt:N0}, {metered.Cached:N0}, {metered.Output:N0}: {(exact ? "exact" : "NOT EXACT")}"));
        return new GlobalFigures(Placement, served, rate, published.Records, metered.Records, exact);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.Publisher.DisposeAsync();
            await node.Feed.DisposeAsync();
        }
    }
}
