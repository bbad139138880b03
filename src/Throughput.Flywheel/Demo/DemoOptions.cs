using System.Globalization;
using Throughput.Flywheel.Batching;

namespace Throughput.Flywheel.Demo;

/// <summary>The demo's command line (see <see cref="Usage"/>).</summary>
public sealed record DemoOptions(Uri Platform, Scenario Scenario, FleetOptions Fleet, string OutputDirectory)
{
    /// <summary>Leave the customers' deployments in place at the end, for exploring the dashboard (infra/demo.sh --keep).</summary>
    public bool Keep { get; init; }

    /// <summary>
    /// Each GPU: Mistral-7B's shape on an A100, the Flywheel budget of 512 tokens per iteration (Sarathi-Serve's strict budget
    /// for that pair; 45 ms an iteration), up to 256 sequences at once (their KV caches fit beside the weights).
    /// </summary>
    public static readonly FleetOptions DefaultFleet = new() { Nodes = 2, Cost = IterationCost.MistralOnA100, TokenBudget = 512, MaxSequencesPerNode = 256 };

    /// <summary>Prompt tokens the whole-prompt fleet batches in one iteration (vLLM's max_num_batched_tokens before chunked prefill was 4,096 and up).</summary>
    public const int WholePromptBatch = 4096;

    /// <summary>
    /// The two regions of one geography the Global deployment is served from: bought in the second, whose pool gets room for
    /// half of it, with a serving node in each (<see cref="GlobalServing"/>).
    /// </summary>
    public IReadOnlyList<string> GlobalRegions { get; init; } = ["eastus", "eastus2"];

    /// <summary>Where metering goes; a test host listens on an exchange of its own.</summary>
    public string MeteringExchange { get; init; } = Contracts.MeteringTopology.Exchange;

    public const string Usage =
        "usage: Throughput.Flywheel [platform-url] [--minutes 5] [--window 60s] [--resize-at <time>] [--nodes 2] [--budget 512] [--gpu A100-80GB] " +
        "[--output-scale 1] [--sell 1] [--model gpt-4o-mini] [--region eastus] [--global-regions eastus,eastus2] [--out artifacts/demo] [--keep]   (times: 500ms, 10s, 2m or seconds)\n" +
        "       Throughput.Flywheel calibrate [platform-url] [--gpu A100-80GB] [--budget 512] [--model gpt-4o-mini]";

    public static DemoOptions Parse(IReadOnlyList<string> args)
    {
        var platform = new Uri("http://127.0.0.1:5080");
        var scenario = new Scenario();
        var fleet = DefaultFleet;
        var output = Path.Combine("artifacts", "demo");
        var keep = false;
        string[] globalRegions = ["eastus", "eastus2"];
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                platform = new Uri(arg);
                continue;
            }
            if (arg == "--keep")
            {
                keep = true;
                continue;
            }
            if (i + 1 >= args.Count) throw new FormatException($"{arg} needs a value.");
            var value = args[++i];
            switch (arg)
            {
                case "--minutes": scenario = scenario with { Duration = TimeSpan.FromMinutes(Positive(arg, double.Parse(value, CultureInfo.InvariantCulture))) }; break;
                case "--window": scenario = scenario with { Window = Duration(arg, value) }; break;
                case "--resize-at": scenario = scenario with { ResizeAt = Duration(arg, value) }; break;
                case "--nodes": fleet = fleet with { Nodes = (int)Positive(arg, int.Parse(value, CultureInfo.InvariantCulture)) }; break;
                case "--budget":
                    var budget = (int)Positive(arg, int.Parse(value, CultureInfo.InvariantCulture));
                    fleet = fleet with { TokenBudget = budget, MaxSequencesPerNode = Math.Min(fleet.MaxSequencesPerNode, budget - 1) };
                    break;
                case "--gpu": fleet = fleet with { Cost = fleet.Cost! with { Gpu = GpuKind.Named(value) } }; break;
                case "--output-scale": scenario = scenario with { OutputScale = Positive(arg, double.Parse(value, CultureInfo.InvariantCulture)) }; break;
                case "--sell": scenario = scenario with { Sell = (decimal)Math.Min(1, Positive(arg, double.Parse(value, CultureInfo.InvariantCulture))) }; break;
                case "--model": scenario = scenario with { Model = value }; break;
                case "--region": scenario = scenario with { Region = value }; break;
                case "--global-regions":
                    globalRegions = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                    if (globalRegions.Length != 2 || globalRegions[0] == globalRegions[1]) throw new FormatException("--global-regions: two different regions of one geography, like eastus,eastus2.");
                    break;
                case "--out": output = value; break;
                default: throw new FormatException($"Unknown option {arg}.");
            }
        }
        if (scenario.Window > scenario.Duration) throw new FormatException("--window is longer than the run.");
        return new DemoOptions(platform, scenario, fleet, output) { Keep = keep, GlobalRegions = globalRegions };
    }

    /// <summary>"500ms", "10s", "2m", or a number of seconds.</summary>
    public static TimeSpan Duration(string option, string value)
    {
        var (number, unit) = value.EndsWith("ms", StringComparison.Ordinal) ? (value[..^2], 0.001)
            : value.EndsWith('s') ? (value[..^1], 1)
            : value.EndsWith('m') ? (value[..^1], 60)
            : (value, 1d);
        return double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var amount) && amount > 0
            ? TimeSpan.FromSeconds(amount * unit)
            : throw new FormatException($"{option}: '{value}' is not a positive time like 500ms, 10s or 2m.");
    }

    static double Positive(string option, double value) => value > 0 ? value : throw new FormatException($"{option} must be positive.");
}
