using System.Text.RegularExpressions;
using Throughput.Configuration;
using Throughput.Hosting;
using Xunit.Abstractions;

namespace Throughput.Tests;

/// <summary>
/// The platform's folders are its namespaces. These read the sources (using directives, qualified names and cref
/// prefixes), print which folder uses which, and hold the shape: no cycles, the composition root used by nobody, and one
/// module per feature, all of them in <see cref="Features.All"/>.
/// </summary>
public sealed partial class FeatureFolderTests(ITestOutputHelper output)
{
    /// <summary>The composition root and the store's plumbing: they may use features, features may not use them.</summary>
    static readonly string[] Infrastructure = ["Hosting", "Store"];

    static readonly string[] Foundations = ["Configuration", "EventLog", "Http"];

    [Fact]
    public void No_two_folders_depend_on_each_other_directly_or_through_others()
    {
        var uses = FolderDependencies();
        foreach (var (folder, used) in uses.OrderBy(u => u.Key, StringComparer.Ordinal))
            output.WriteLine($"{folder,-14} -> {string.Join(' ', used.Order(StringComparer.Ordinal))}");

        var cycle = FindCycle(uses);
        Assert.True(cycle is null, $"folder cycle: {string.Join(" -> ", cycle ?? [])}");
    }

    [Fact]
    public void Features_use_neither_the_host_nor_the_store_plumbing()
    {
        var offenders = FolderDependencies()
            .Where(u => !Infrastructure.Contains(u.Key))
            .SelectMany(u => u.Value.Intersect(Infrastructure).Select(used => $"{u.Key} -> {used}"))
            .ToList();
        Assert.Empty(offenders);
    }

    [Fact]
    public void Every_feature_folder_has_one_module_and_the_host_lists_every_module()
    {
        var modules = typeof(FeatureModule).Assembly.GetTypes().Where(t => t.IsSubclassOf(typeof(FeatureModule)) && !t.IsAbstract).ToList();
        var features = FolderDependencies().Keys.Except(Infrastructure).Except(Foundations).ToList();
        foreach (var feature in features)
            Assert.Single(modules, m => m.Namespace == $"Throughput.{feature}");
        Assert.Equal(modules.OrderBy(m => m.FullName), Features.All.Select(m => m.GetType()).OrderBy(m => m.FullName));
    }

    [Fact]
    public void Each_event_type_and_each_stored_name_is_registered_once()
    {
        var registered = Features.All.SelectMany(m => m.Events).ToList();
        Assert.Equal(registered.Count, registered.Select(e => e.Key).Distinct().Count());
        Assert.Equal(registered.Count, registered.Select(e => e.Value).Distinct().Count());
        Assert.Equal(Features.All.Sum(m => m.Snapshots.Count), Features.All.SelectMany(m => m.Snapshots).Distinct().Count());
    }

    static Dictionary<string, HashSet<string>> FolderDependencies()
    {
        var platform = Path.Combine(SettingsTests.RepositoryRoot(), "src", "Throughput.Platform");
        var folders = Directory.GetDirectories(platform)
            .Where(d => Directory.EnumerateFiles(d, "*.cs").Any())
            .Select(Path.GetFileName)
            .OfType<string>()
            .ToHashSet(StringComparer.Ordinal);
        var reference = new Regex(@"(?:using (?:static )?Throughput\.|Throughput\.|cref=""|[\s(<\[!])(" + string.Join('|', folders) + @")[.;]");
        return folders.ToDictionary(folder => folder, folder => Directory.EnumerateFiles(Path.Combine(platform, folder), "*.cs")
            .SelectMany(file => reference.Matches(File.ReadAllText(file)).Select(m => m.Groups[1].Value))
            .Where(used => used != folder)
            .ToHashSet(StringComparer.Ordinal));
    }

    static List<string>? FindCycle(Dictionary<string, HashSet<string>> uses)
    {
        var done = new HashSet<string>();
        var path = new List<string>();
        foreach (var start in uses.Keys.Order(StringComparer.Ordinal))
            if (Visit(start) is { } cycle) return cycle;
        return null;

        List<string>? Visit(string folder)
        {
            if (path.IndexOf(folder) is var at and >= 0) return [.. path[at..], folder];
            if (!done.Add(folder)) return null;
            path.Add(folder);
            foreach (var used in uses.GetValueOrDefault(folder, []).Order(StringComparer.Ordinal))
                if (Visit(used) is { } cycle) return cycle;
            path.RemoveAt(path.Count - 1);
            return null;
        }
    }
}
