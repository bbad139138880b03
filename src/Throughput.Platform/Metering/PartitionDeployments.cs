using System.Collections.Concurrent;
using Marten;
using Npgsql;
using NpgsqlTypes;
using Throughput.Deployments;

namespace Throughput.Metering;

/// <summary>
/// What each partition's consumer last read and wrote of its deployments, kept between batches: the snapshot with its
/// stored version, and the meter as this host last committed it. A batch then asks PostgreSQL only which snapshots
/// moved (one index read of ids and versions, bodies only for those that did) and reads no meter it wrote itself: the
/// partition's consumer is the meters' only writer. The lifter, or another host that held the partition meanwhile,
/// moves a meter under it; the meter write then fails on its version, the batch is retried, and the partition's
/// memory is dropped first.
/// </summary>
public sealed class PartitionDeployments
{
    readonly ConcurrentDictionary<string, Dictionary<string, Known>> _partitions = new(StringComparer.Ordinal);

    /// <summary>A deployment as the partition last saw it: its snapshot at a stored version, and its meter (null: none yet).</summary>
    public sealed record Known(Deployment Snapshot, string SnapshotVersion, DeploymentMeter? Meter);

    public Partition Of(string queue) => new(_partitions.GetOrAdd(queue, _ => new(StringComparer.Ordinal)));

    /// <summary>One partition's memory; its consumer runs one batch at a time, so it is never used concurrently.</summary>
    public sealed class Partition(Dictionary<string, Known> known)
    {
        /// <summary>The current snapshots of these deployments (absent: no such deployment), and the meters as last written.</summary>
        public async Task<(Dictionary<string, Deployment> Snapshots, Dictionary<string, DeploymentMeter> Meters, Dictionary<string, string> Versions)> ReadAsync(
            IDocumentSession session, IReadOnlyList<string> ids, CancellationToken ct)
        {
            var snapshots = new Dictionary<string, Deployment>(ids.Count, StringComparer.Ordinal);
            var meters = new Dictionary<string, DeploymentMeter>(ids.Count, StringComparer.Ordinal);
            var versions = new Dictionary<string, string>(ids.Count, StringComparer.Ordinal);
            if (ids.Count == 0) return (snapshots, meters, versions);
            var serializer = session.DocumentStore.Options.Serializer();
            await using (var command = new NpgsqlCommand(
                $"""
                select d.id, d.mt_version::text, case when k.v is distinct from d.mt_version::text then d.data end
                from unnest(@ids, @versions) as k(id, v) join {session.DocumentStore.Options.DatabaseSchemaName}.mt_doc_deployment d on d.id = k.id
                """, session.Connection))
            {
                var cached = ids.Select(id => known.TryGetValue(id, out var k) ? k.SnapshotVersion : null).ToArray();
                command.Parameters.Add(new NpgsqlParameter("ids", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = ids.ToArray() });
                command.Parameters.Add(new NpgsqlParameter("versions", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = cached });
                await using var reader = await command.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var id = reader.GetString(0);
                    versions[id] = reader.GetString(1);
                    snapshots[id] = reader.IsDBNull(2) ? known[id].Snapshot : serializer.FromJson<Deployment>(reader, 2);
                }
            }
            List<string> unknownMeters = [];
            foreach (var id in snapshots.Keys)
            {
                if (known.TryGetValue(id, out var k) && k.Meter is { } meter) meters[id] = meter;
                else unknownMeters.Add(id);
            }
            foreach (var (id, meter) in await DeploymentMeters.LoadAsync(session, unknownMeters, ct)) meters[id] = meter;
            return (snapshots, meters, versions);
        }

        /// <summary>After the commit: the snapshots read and the meters written. A deployment whose stream this batch moved is forgotten.</summary>
        public void Committed(Dictionary<string, Deployment> snapshots, Dictionary<string, string> versions, IEnumerable<DeploymentMeter> written, IEnumerable<string> moved)
        {
            foreach (var meter in written)
                known[meter.DeploymentId] = new Known(snapshots[meter.DeploymentId], versions[meter.DeploymentId], meter);
            foreach (var id in moved) known.Remove(id);
        }

        /// <summary>Something this partition remembered was moved by another writer: read everything again.</summary>
        public void Forget() => known.Clear();
    }
}
