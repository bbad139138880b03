using Microsoft.Extensions.Logging;

namespace Throughput.IntegrationTests;

/// <summary>
/// A fixture host's warnings and errors, appended to <c>artifacts/test-logs/{fixture}.log</c>: a wait that timed out can
/// then be traced to what the host logged meanwhile (a batch retried to exhaustion, a push that failed).
/// </summary>
public sealed class HostLogFile(string name) : ILoggerProvider
{
    readonly string _path = Path.Combine(Tests.RepositoryRoot(), "artifacts", "test-logs", name + ".log");
    readonly Lock _gate = new();

    public ILogger CreateLogger(string categoryName) => new Writer(this, categoryName);

    public void Dispose() { }

    void Append(string line)
    {
        lock (_gate)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
            File.AppendAllText(_path, line + Environment.NewLine);
        }
    }

    sealed class Writer(HostLogFile file, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
                file.Append($"{DateTimeOffset.UtcNow:O} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : Environment.NewLine + exception)}");
        }
    }
}
