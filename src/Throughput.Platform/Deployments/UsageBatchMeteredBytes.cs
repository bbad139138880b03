using System.Text.Json;
using JasperFx.Events;

namespace Throughput.Deployments;

/// <summary>
/// Stores <see cref="UsageBatchMetered"/> as its JSON (<see cref="UsageBatchMeteredJson"/>) in <c>mt_events.bdata</c>, a
/// <c>bytea</c>, instead of <c>jsonb</c> in <c>data</c>: at thousands of deployments a usage event is about a megabyte of
/// JSON, PostgreSQL parsed each one into <c>jsonb</c> on append and formatted it back for every reader, and nothing in
/// the platform queries inside it. The bytes are the same JSON, so SQL can still read one with
/// <c>convert_from(bdata, 'UTF8')::jsonb</c>; events stored before, in <c>data</c>, are read as they were.
/// </summary>
public sealed class UsageBatchMeteredBytes : IEventBinarySerializer
{
    public static readonly UsageBatchMeteredBytes Instance = new();

    static readonly JsonSerializerOptions Options = new();

    /// <summary>SQL for a usage event's body as <c>jsonb</c> whichever way it is stored; <paramref name="row"/> names its <c>mt_events</c> row.</summary>
    public static string BodySql(string row) => $"coalesce(convert_from({row}.bdata, 'UTF8')::jsonb, {row}.data)";

    public byte[] Serialize(Type type, object data) => JsonSerializer.SerializeToUtf8Bytes((UsageBatchMetered)data, Options);

    public object Deserialize(Type type, byte[] data) => JsonSerializer.Deserialize<UsageBatchMetered>(data, Options)
        ?? throw new JsonException("A usage batch event's body is empty.");
}
