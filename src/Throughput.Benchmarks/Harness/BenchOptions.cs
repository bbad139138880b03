using System.Globalization;

namespace Throughput.Benchmarks.Harness;

/// <summary>
/// Command-line options as <c>--name value</c> pairs (a name may repeat). Each benchmark reads the options it knows;
/// <see cref="EnsureAllRead"/> then refuses the rest, so a mistyped option fails the run instead of being ignored.
/// </summary>
public sealed class BenchOptions
{
    readonly Dictionary<string, List<string>> _values;
    readonly HashSet<string> _read = new(StringComparer.Ordinal);

    BenchOptions(Dictionary<string, List<string>> values) => _values = values;

    public static BenchOptions Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
                throw new UsageException($"expected '--name value' or '--flag', got '{string.Join(' ', args.Skip(i))}'");
            var name = args[i][2..];
            if (!values.TryGetValue(name, out var list)) values[name] = list = [];
            // A name followed by another name (or nothing) is a flag: --full means --full true.
            list.Add(i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true");
        }
        return new BenchOptions(values);
    }

    public string Text(string name, string fallback) => All(name) is [.., var last] ? last : fallback;

    public IReadOnlyList<string> All(string name)
    {
        _read.Add(name);
        return _values.TryGetValue(name, out var list) ? list : [];
    }

    public int Count(string name, int fallback) => Number(name, fallback, s => int.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture));

    public TimeSpan Seconds(string name, TimeSpan fallback) =>
        Number(name, fallback, s => TimeSpan.FromSeconds(double.Parse(s.TrimEnd('s'), NumberStyles.Float, CultureInfo.InvariantCulture)));

    public TimeSpan Minutes(string name, TimeSpan fallback) =>
        Number(name, fallback, s => TimeSpan.FromMinutes(double.Parse(s.TrimEnd('m'), NumberStyles.Float, CultureInfo.InvariantCulture)));

    public TimeSpan Milliseconds(string name, TimeSpan fallback) =>
        Number(name, fallback, s => TimeSpan.FromMilliseconds(double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture)));

    /// <summary>The platform host's environment: <paramref name="settings"/>, then every <c>--host-env NAME=VALUE</c> over them.</summary>
    public Dictionary<string, string> HostEnvironment(IReadOnlyDictionary<string, string> settings)
    {
        var environment = new Dictionary<string, string>(settings, StringComparer.Ordinal);
        foreach (var (name, value) in Pairs("host-env")) environment[name] = value;
        return environment;
    }

    /// <summary>Every <c>--{option} NAME=VALUE</c> given, in order.</summary>
    public IReadOnlyList<(string Name, string Value)> Pairs(string option) => All(option).Select(pair =>
    {
        var eq = pair.IndexOf('=', StringComparison.Ordinal);
        return eq < 1 ? throw new UsageException($"--{option} '{pair}' is not NAME=VALUE") : (pair[..eq], pair[(eq + 1)..]);
    }).ToList();

    public void EnsureAllRead()
    {
        var unknown = _values.Keys.Where(k => !_read.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"unknown option(s): {string.Join(", ", unknown.Select(k => "--" + k))}");
    }

    T Number<T>(string name, T fallback, Func<string, T> parse)
    {
        if (All(name) is not [.., var text]) return fallback;
        try
        {
            return parse(text);
        }
        catch (FormatException)
        {
            throw new UsageException($"--{name}: '{text}' is not a number");
        }
    }
}

/// <summary>The command line was wrong: print the message and the usage, run nothing.</summary>
public sealed class UsageException(string message) : Exception(message);
