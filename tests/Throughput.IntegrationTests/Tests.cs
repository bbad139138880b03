namespace Throughput.IntegrationTests;

static class Tests
{
    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Throughput.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Throughput.sln not found above " + AppContext.BaseDirectory);
    }
}
