using System.Globalization;
using Throughput.Flywheel.Batching;

namespace Throughput.Flywheel.Demo;

/// <summary>The demo's command line: <c>[platform-url] [--minutes 5] [--window 60s] [--resize-at 3m] [--nodes 2] [--budget 4096] [--iteration 25ms] [--model gpt-4o-mini] [--region eastus] [--out artifacts/demo]</c>.</summary>
public sealed record DemoOptions(Uri Platform, Scenario Scenario, FleetOptions Fleet, string OutputDirectory)
{
    /// <summary>Where metering goes; a test host listens on an exchange of its own.</summary>
    public string MeteringExchange { get; init; } = Contracts.MeteringTopology.Exchange;

    public const string Usage =
        "usage: Throughput.Flywheel [platform-url] [--minutes 5] [--window 60s] [--resize-at <time>] [--nodes 2] [--budget 4096] " +
        "[--iteration 25ms] [--model gpt-4o-mini] [--region eastus] [--out artifacts/demo]   (times: 500ms, 10s, 2m or seconds)";

    public static DemoOptions Parse(IReadOnlyList<string> args)
    {
        var platform = new Uri("http://127.0.0.1:5080");
        var scenario = new Scenario();
        var fleet = new FleetOptions();
        var output = Path.Combine("artifacts", "demo");
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                platform = new Uri(arg);
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
                    fleet = fleet with { TokenBudget = budget, MaxSequencesPerNode = Math.Clamp(budget / 4, 1, 1024) };
                    break;
                case "--iteration": fleet = fleet with { IterationTime = Duration(arg, value) }; break;
                case "--model": scenario = scenario with { Model = value }; break;
                case "--region": scenario = scenario with { Region = value }; break;
                case "--out": output = value; break;
                default: throw new FormatException($"Unknown option {arg}.");
            }
        }
        if (scenario.Window > scenario.Duration) throw new FormatException("--window is longer than the run.");
        return new DemoOptions(platform, scenario, fleet, output);
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
