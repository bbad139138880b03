using System.Text.RegularExpressions;
using Throughput.Hosting;

namespace Throughput.Tests;

public sealed partial class SettingsTests
{
    [Fact]
    public void The_host_defaults_are_the_ones_infra_env_sh_defines()
    {
        var envFile = Path.Combine(RepositoryRoot(), "infra", "env.sh");
        var defaults = DefaultPattern().Matches(File.ReadAllText(envFile))
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);

        var names = new[]
        {
            "THROUGHPUT_PG_HOST", "THROUGHPUT_PG_PORT", "THROUGHPUT_PG_DATABASE", "THROUGHPUT_PG_USER", "THROUGHPUT_PG_PASSWORD", "THROUGHPUT_PG_SCHEMA",
            "THROUGHPUT_RABBIT_HOST", "THROUGHPUT_RABBIT_PORT", "THROUGHPUT_RABBIT_VHOST", "THROUGHPUT_RABBIT_USER", "THROUGHPUT_RABBIT_PASSWORD",
        };
        var saved = names.ToDictionary(n => n, Environment.GetEnvironmentVariable);
        try
        {
            foreach (var name in names) Environment.SetEnvironmentVariable(name, null);
            var s = ServiceSettings.FromEnvironment();
            var expected = new ServiceSettings(
                defaults["THROUGHPUT_PG_HOST"], int.Parse(defaults["THROUGHPUT_PG_PORT"]), defaults["THROUGHPUT_PG_DATABASE"],
                defaults["THROUGHPUT_PG_USER"], defaults["THROUGHPUT_PG_PASSWORD"], defaults["THROUGHPUT_PG_SCHEMA"],
                defaults["THROUGHPUT_RABBIT_HOST"], int.Parse(defaults["THROUGHPUT_RABBIT_PORT"]), defaults["THROUGHPUT_RABBIT_VHOST"],
                defaults["THROUGHPUT_RABBIT_USER"], defaults["THROUGHPUT_RABBIT_PASSWORD"]);
            Assert.Equal(expected, s);
        }
        finally
        {
            foreach (var (name, value) in saved) Environment.SetEnvironmentVariable(name, value);
        }
    }

    internal static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Throughput.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Throughput.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"\$\{(THROUGHPUT_[A-Z_]+):=([^}]*)\}")]
    private static partial Regex DefaultPattern();
}
