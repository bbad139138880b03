using System.Globalization;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;

namespace Throughput.Flywheel.Demo;

/// <summary>The adapter benchmark's command line (see <see cref="Usage"/>).</summary>
public sealed record AdapterOptions(Uri Platform, FleetOptions Fleet)
{
    /// <summary>Adapters in the set, all registered and bought; the load is spread over all of them.</summary>
    public int Adapters { get; init; } = 1000;

    /// <summary>Skew of the load over the adapters: the k-th most popular is asked 1/k^Zipf as often as the first.</summary>
    public double Zipf { get; init; } = 1.0;

    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(4);

    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>The set's share of the fleet's calibrated capacity.</summary>
    public decimal Sell { get; init; } = 0.9m;

    /// <summary>Chat, as fine-tuned assistants are used; outputs scaled by --output-scale.</summary>
    public Workload Workload { get; init; } = Workload.Chat;

    public string Model { get; init; } = "gpt-4o";

    public string Region { get; init; } = "eastus";

    /// <summary>The adapters-in-use counts the simulated comparison of time per output token runs (those up to <see cref="Adapters"/>, and it).</summary>
    public IReadOnlyList<int> SpreadCounts => [.. Spreads.Where(k => k < Adapters).Append(Adapters)];

    static readonly int[] Spreads = [1, 10, 100, 1000];

    public string MeteringExchange { get; init; } = Contracts.MeteringTopology.Exchange;

    public bool Keep { get; init; }

    /// <summary>
    /// The demo's fleet (two A100s of Mistral-7B's shape, budget 512, 256 sequences each), each node holding 256 adapters of
    /// rank 16: 7 GB beside 14.5 GB of weights and up to 50 GB of KV cache, so every running request's adapter fits at once.
    /// </summary>
    public static readonly FleetOptions DefaultFleet = DemoOptions.DefaultFleet with { AdapterSlots = 256 };

    public const string Usage =
        "usage: Throughput.Flywheel adapters [platform-url] [--adapters 1000] [--zipf 1.0] [--minutes 4] [--window 20s] [--sell 0.9] [--output-scale 1] " +
        "[--slots 256] [--nodes 2] [--model gpt-4o] [--region eastus] [--keep]";

    public static AdapterOptions Parse(IReadOnlyList<string> args)
    {
        var options = new AdapterOptions(new Uri("http://127.0.0.1:5080"), DefaultFleet);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                options = options with { Platform = new Uri(arg) };
                continue;
            }
            if (arg == "--keep")
            {
                options = options with { Keep = true };
                continue;
            }
            if (i + 1 >= args.Count) throw new FormatException($"{arg} needs a value.");
            var value = args[++i];
            options = arg switch
            {
                "--adapters" => options with { Adapters = Number(arg, value) <= 1000 ? (int)Number(arg, value) : throw new FormatException("--adapters: a set holds up to 1,000 adapters.") },
                "--zipf" => options with { Zipf = Number(arg, value) },
                "--minutes" => options with { Duration = TimeSpan.FromMinutes(Number(arg, value)) },
                "--window" => options with { Window = DemoOptions.Duration(arg, value) },
                "--sell" => options with { Sell = (decimal)Math.Min(1, Number(arg, value)) },
                "--output-scale" => options with { Workload = Workload.Chat.Scaled(Number(arg, value)) },
                "--slots" => options with { Fleet = options.Fleet with { AdapterSlots = (int)Number(arg, value) } },
                "--nodes" => options with { Fleet = options.Fleet with { Nodes = (int)Number(arg, value) } },
                "--model" => options with { Model = value },
                "--region" => options with { Region = value },
                _ => throw new FormatException($"Unknown option {arg}."),
            };
        }
        if (options.Window > options.Duration) throw new FormatException("--window is longer than the run.");
        if (options.Fleet.AdapterSlots < options.Fleet.MaxSequencesPerNode)
            throw new FormatException($"--slots must be at least the {options.Fleet.MaxSequencesPerNode} sequences a node runs.");
        return options;
    }

    static double Number(string option, string value) =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && number > 0
            ? number
            : throw new FormatException($"{option} must be a positive number.");
}
