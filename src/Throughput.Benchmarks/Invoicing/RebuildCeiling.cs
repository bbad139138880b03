using System.Diagnostics;
using Marten;
using Npgsql;
using Throughput.Deployments;
using Throughput.Benchmarks.Harness;
using Throughput.Configuration;
using Throughput.Hosting;
using Throughput.Store;

namespace Throughput.Benchmarks.Invoicing;

/// <summary>What reading the log bare took: the events read, the wall time and this process's CPU meanwhile.</summary>
/// <param name="Unmapped">Rows of a type no feature maps (Marten's own, if any): read but not deserialized.</param>
public sealed record RebuildCeilingRun(long Events, long Unmapped, TimeSpan Took, TimeSpan Cpu)
{
    public double EventsPerSecond => Took > TimeSpan.Zero ? Events / Took.TotalSeconds : 0;
}

/// <summary>
/// The rebuild's ceiling: every row of the schema's event log read in order (type and data), each body deserialized to
/// its CLR type by the platform's own Marten serializer (same System.Text.Json options and converters, same stored
/// names), and nothing else: no slicing, no folding, no writes.
/// </summary>
public static class RebuildCeiling
{
    public static async Task<RebuildCeilingRun> MeasureAsync(string schema, CancellationToken ct)
    {
        var options = new StoreOptions();
        EventStore.Configure(options, ServiceSettings.FromEnvironment() with { PgSchema = schema }, ProjectionLayout.SinglePassRebuild, Features.All);
        var serializer = options.Serializer();
        var types = Features.All.SelectMany(m => m.Events).ToDictionary(e => e.Value, e => e.Key, StringComparer.Ordinal);

        await using var database = NpgsqlDataSource.Create(Services.PostgresConnectionString());
        await using var command = database.CreateCommand($"select type, data, bdata from {schema}.mt_events order by seq_id");
        command.CommandTimeout = 0; // a million rows take longer than the default 30 s on a busy machine
        var started = Stopwatch.GetTimestamp();
        var cpu = Environment.CpuUsage.TotalTime;
        long events = 0, unmapped = 0;
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                events++;
                if (!types.TryGetValue(reader.GetString(0), out var type))
                {
                    unmapped++;
                    continue;
                }
                _ = (reader.IsDBNull(2) ? serializer.FromJson(type, reader, 1) : UsageBatchMeteredBytes.Instance.Deserialize(type, reader.GetFieldValue<byte[]>(2)))
                    ?? throw new InvalidOperationException($"event {events} did not deserialize to {type.Name}");
            }
        }
        return new RebuildCeilingRun(events, unmapped, Stopwatch.GetElapsedTime(started), Environment.CpuUsage.TotalTime - cpu);
    }
}
