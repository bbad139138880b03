using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Throughput.Deployments;

/// <summary>
/// <see cref="UsageBatchMetered"/> as columns: one JSON array per field of <see cref="UsageMetered"/>, the i-th element of
/// each belonging to the i-th deployment, instead of an object per deployment repeating every field name. A batch over
/// thousands of deployments is then under half the text, and PostgreSQL parses it into <c>jsonb</c> about three times
/// faster (2,270 deployments: 1.67 MB in 33 ms as objects, 0.66 MB in 9 ms as columns; psql on the 2-core VM,
/// 2026-12-04), which is most of what appending the batch's event costs. <c>months</c> and <c>adapters</c> are present
/// only when some deployment has them, aligned with the others (null where it has none). A token count other than
/// <c>records</c> that is 0 for every deployment (the spilled counts, nearly always) is left out and read as 0s.
/// <c>meteredAt</c> is one string when every deployment was metered at the same moment, as a consumer's batch is, and a
/// column otherwise. Events written before hold <c>{"usage": [ … ]}</c>, an object per deployment, or every column
/// whole; all are read.
/// </summary>
public sealed class UsageBatchMeteredJson : JsonConverter<UsageBatchMetered>
{
    static readonly UsageMeteredJson Single = new();

    public override UsageBatchMetered Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException("A usage batch event is a JSON object.");
        var c = Columns.ForThisThread();
        List<UsageMetered>? objects = null;
        bool hasDeployments = false, hasMonths = false, hasAdapters = false;
        DateTimeOffset? meteredOnce = null;
        var present = 0; // the token columns the event holds, one bit each
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (TokenColumn(ref reader) is >= 0 and var i) { reader.Read(); Column(ref reader, c.Counts[i], static (ref r) => r.GetInt64()); present |= 1 << i; }
            else if (reader.ValueTextEquals("usage"u8)) { reader.Read(); objects = Objects(ref reader, options); }
            else if (reader.ValueTextEquals("deploymentId"u8)) { reader.Read(); Column(ref reader, c.Deployments, IdOrNull); hasDeployments = true; }
            else if (reader.ValueTextEquals("tenantId"u8)) { reader.Read(); Column(ref reader, c.Tenants, IdOrNull); }
            else if (reader.ValueTextEquals("producers"u8)) { reader.Read(); ReadProducers(ref reader, c); }
            else if (reader.ValueTextEquals("weightedTokens"u8)) { reader.Read(); Column(ref reader, c.Weighted, static (ref r) => r.GetDecimal()); }
            else if (reader.ValueTextEquals("firstStartedAt"u8)) { reader.Read(); Column(ref reader, c.Started, static (ref r) => r.GetDateTimeOffset()); }
            else if (reader.ValueTextEquals("lastFinishedAt"u8)) { reader.Read(); Column(ref reader, c.Finished, static (ref r) => r.GetDateTimeOffset()); }
            else if (reader.ValueTextEquals("bucketLevel"u8)) { reader.Read(); Column(ref reader, c.Levels, static (ref r) => r.GetDecimal()); }
            else if (reader.ValueTextEquals("utilization"u8)) { reader.Read(); Column(ref reader, c.Utilizations, static (ref r) => r.GetDecimal()); }
            else if (reader.ValueTextEquals("tokensPerMinute"u8)) { reader.Read(); Column(ref reader, c.Rates, static (ref r) => r.GetInt64()); }
            else if (reader.ValueTextEquals("meteredAt"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String) meteredOnce = reader.GetDateTimeOffset();
                else Column(ref reader, c.Metered, static (ref r) => r.GetDateTimeOffset());
            }
            else if (reader.ValueTextEquals("months"u8)) { reader.Read(); Column(ref reader, c.Months, static (ref r) => (IReadOnlyList<MonthlyUsage>?)UsageMeteredJson.ReadMonths(ref r)); hasMonths = true; }
            else if (reader.ValueTextEquals("adapters"u8)) { reader.Read(); Column(ref reader, c.AdaptersUsed, static (ref r) => (IReadOnlyList<AdapterUsage>?)UsageMeteredJson.ReadAdapters(ref r)); hasAdapters = true; }
            else { reader.Read(); reader.Skip(); }
        }
        if (objects is not null) return new UsageBatchMetered(objects);
        if (!hasDeployments) return new UsageBatchMetered([]);

        var n = c.Deployments.Count;
        if (c.Tenants.Count != n || c.Producers.Count != n || c.Weighted.Count != n || c.Levels.Count != n || c.Utilizations.Count != n
            || c.Started.Count != n || c.Finished.Count != n || meteredOnce is null && c.Metered.Count != n || c.Rates.Count != n || (present & 1) == 0 || !c.CountsAre(n, present)
            || hasMonths && c.Months.Count != n || hasAdapters && c.AdaptersUsed.Count != n)
            throw new JsonException("A usage batch event's columns differ in length.");
        var usage = new List<UsageMetered>(n);
        var counts = c.Counts;
        for (var column = 0; column < counts.Length; column++)
            if ((present & 1 << column) == 0) c.Zeros(column, n);
        for (var i = 0; i < n; i++)
        {
            var tokens = new TokenCounts(counts[0][i], counts[1][i], counts[2][i], counts[3][i], counts[4][i], counts[5][i], counts[6][i], counts[7][i]);
            usage.Add(new UsageMetered(c.Deployments[i]!, c.Tenants[i], c.Producers[i], tokens, c.Weighted[i], c.Started[i], c.Finished[i], c.Levels[i],
                c.Utilizations[i], c.Rates[i], meteredOnce ?? c.Metered[i], hasMonths ? c.Months[i] : null, hasAdapters ? c.AdaptersUsed[i] : null));
        }
        c.Release();
        return new UsageBatchMetered(usage);
    }

    /// <summary>
    /// The columns of one event as it is read, kept per thread from one event to the next: every usage event is read by
    /// every host's admission table, alert watch and read models, and new lists per column per event were most of what
    /// reading one allocated. A reader never yields in the middle of an event, so a thread reads one at a time.
    /// </summary>
    sealed class Columns
    {
        // Lists grown past this by one large event are let go rather than kept for the thread's life.
        const int KeptCapacity = 4096;

        [ThreadStatic] static Columns? _current;

        public readonly List<long>[] Counts = [.. TokenColumns.Select(_ => new List<long>())];
        public readonly List<string?> Deployments = [];
        public readonly List<string?> Tenants = [];
        public readonly List<IReadOnlyList<ProducerRange>> Producers = [];
        public readonly List<ProducerRange> Ranges = [];
        public readonly List<decimal> Weighted = [], Levels = [], Utilizations = [];
        public readonly List<DateTimeOffset> Started = [], Finished = [], Metered = [];
        public readonly List<long> Rates = [];
        public readonly List<IReadOnlyList<MonthlyUsage>?> Months = [];
        public readonly List<IReadOnlyList<AdapterUsage>?> AdaptersUsed = [];

        public static Columns ForThisThread()
        {
            var columns = OfThisThread;
            columns.Clear();
            return columns;
        }

        /// <summary>This thread's columns as they are, for a value read in the middle of an event.</summary>
        public static Columns OfThisThread => _current ??= new Columns();

        // Ids repeat from event to event (a deployment, its tenant, its serving nodes), so each is one string per thread.
        const int KeptIds = 16_384;
        const int LongestKeptId = 128;
        readonly Dictionary<string, string> _ids = new(StringComparer.Ordinal);

        /// <summary>The string value the reader is on, the same instance as the last time this thread read the same id.</summary>
        public string Id(ref Utf8JsonReader reader)
        {
            if (reader.HasValueSequence || reader.ValueSpan.Length > LongestKeptId) return reader.GetString()!;
            Span<char> chars = stackalloc char[LongestKeptId];
            var value = chars[..reader.CopyString(chars)];
            if (_ids.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(value, out var id)) return id;
            if (_ids.Count >= KeptIds) _ids.Clear();
            id = new string(value);
            _ids[id] = id;
            return id;
        }

        public bool CountsAre(int n, int present)
        {
            for (var column = 0; column < Counts.Length; column++)
                if ((present & 1 << column) != 0 && Counts[column].Count != n) return false;
            return true;
        }

        /// <summary>A token column the event left out: 0 for each of its <paramref name="n"/> deployments.</summary>
        public void Zeros(int column, int n)
        {
            Counts[column].Clear();
            Counts[column].AddRange(Enumerable.Repeat(0L, n));
        }

        /// <summary>Lets go of what the event's objects hold, and of lists one large event grew.</summary>
        public void Release()
        {
            if (Deployments.Capacity > KeptCapacity) _current = null;
            else Clear();
        }

        void Clear()
        {
            foreach (var column in Counts) column.Clear();
            Deployments.Clear();
            Tenants.Clear();
            Producers.Clear();
            Ranges.Clear();
            Weighted.Clear();
            Levels.Clear();
            Utilizations.Clear();
            Started.Clear();
            Finished.Clear();
            Metered.Clear();
            Rates.Clear();
            Months.Clear();
            AdaptersUsed.Clear();
        }
    }

    public override void Write(Utf8JsonWriter writer, UsageBatchMetered value, JsonSerializerOptions options)
    {
        var usage = value.Usage;
        writer.WriteStartObject();
        // The columns a bucket follower reads come first, so that it stops reading there (ReadBuckets).
        Write(writer, "deploymentId"u8, usage, static (w, u) => w.WriteStringValue(u.DeploymentId));
        Write(writer, "bucketLevel"u8, usage, static (w, u) => w.WriteNumberValue(u.BucketLevel));
        if (usage.Count > 0 && usage.All(u => u.MeteredAt == usage[0].MeteredAt && u.MeteredAt.Offset == usage[0].MeteredAt.Offset))
            writer.WriteString("meteredAt"u8, usage[0].MeteredAt);
        else Write(writer, "meteredAt"u8, usage, static (w, u) => w.WriteStringValue(u.MeteredAt));
        Write(writer, "tenantId"u8, usage, static (w, u) => { if (u.TenantId is null) w.WriteNullValue(); else w.WriteStringValue(u.TenantId); });
        Write(writer, "producers"u8, usage, static (w, u) =>
        {
            w.WriteStartArray();
            foreach (var range in u.Producers)
            {
                w.WriteStringValue(range.ProducerId);
                w.WriteNumberValue(range.FirstSequence);
                w.WriteNumberValue(range.LastSequence);
            }
            w.WriteEndArray();
        });
        for (var c = 0; c < TokenColumns.Length; c++)
        {
            if (c > 0 && usage.All(u => Count(u.Tokens, c) == 0)) continue;
            writer.WriteStartArray(TokenColumns[c]);
            foreach (var u in usage) writer.WriteNumberValue(Count(u.Tokens, c));
            writer.WriteEndArray();
        }
        Write(writer, "weightedTokens"u8, usage, static (w, u) => w.WriteNumberValue(u.WeightedTokens));
        Write(writer, "firstStartedAt"u8, usage, static (w, u) => w.WriteStringValue(u.FirstStartedAt));
        Write(writer, "lastFinishedAt"u8, usage, static (w, u) => w.WriteStringValue(u.LastFinishedAt));
        Write(writer, "utilization"u8, usage, static (w, u) => w.WriteNumberValue(u.Utilization));
        Write(writer, "tokensPerMinute"u8, usage, static (w, u) => w.WriteNumberValue(u.TokensPerMinute));
        if (usage.Any(u => u.Months is not null))
            Write(writer, "months"u8, usage, static (w, u) => UsageMeteredJson.WriteMonths(w, u.Months));
        if (usage.Any(u => u.Adapters is not null))
            Write(writer, "adapters"u8, usage, static (w, u) => UsageMeteredJson.WriteAdapters(w, u.Adapters));
        writer.WriteEndObject();
    }

    /// <summary>
    /// Each deployment's bucket level and the time it was metered, from a columnar usage event (whole or without
    /// <see cref="AllButBuckets"/>); false for an event of the earlier object form, which is read whole.
    /// </summary>
    public static bool ReadBuckets(JsonElement usageEvent, List<(string DeploymentId, decimal BucketLevel, DateTimeOffset MeteredAt)> buckets)
    {
        if (!usageEvent.TryGetProperty("deploymentId"u8, out var ids)) return !usageEvent.TryGetProperty("usage"u8, out _);
        if (!usageEvent.TryGetProperty("bucketLevel"u8, out var levels) || !usageEvent.TryGetProperty("meteredAt"u8, out var times)
            || levels.GetArrayLength() != ids.GetArrayLength() || times.ValueKind != JsonValueKind.String && times.GetArrayLength() != ids.GetArrayLength())
            throw new JsonException("A usage batch event's columns differ in length.");
        using var level = levels.EnumerateArray().GetEnumerator();
        if (times.ValueKind == JsonValueKind.String)
        {
            var at = times.GetDateTimeOffset();
            foreach (var id in ids.EnumerateArray())
            {
                level.MoveNext();
                buckets.Add((id.GetString()!, level.Current.GetDecimal(), at));
            }
            return true;
        }
        using var time = times.EnumerateArray().GetEnumerator();
        foreach (var id in ids.EnumerateArray())
        {
            level.MoveNext();
            time.MoveNext();
            buckets.Add((id.GetString()!, level.Current.GetDecimal(), time.Current.GetDateTimeOffset()));
        }
        return true;
    }

    /// <summary>
    /// <see cref="ReadBuckets(JsonElement, List{ValueTuple{string, decimal, DateTimeOffset}})"/> for an event's stored bytes
    /// (<see cref="UsageBatchMeteredBytes"/>), reading only as far as the three columns, which it writes first; false for an
    /// event of the earlier object form, which is read whole.
    /// </summary>
    public static bool ReadBuckets(ReadOnlySpan<byte> usageEvent, List<(string DeploymentId, decimal BucketLevel, DateTimeOffset MeteredAt)> buckets)
    {
        var reader = new Utf8JsonReader(usageEvent);
        reader.Read();
        List<string>? ids = null;
        List<decimal>? levels = null;
        List<DateTimeOffset>? times = null;
        DateTimeOffset? once = null;
        while ((ids is null || levels is null || times is null && once is null) && reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("usage"u8)) return false;
            if (reader.ValueTextEquals("deploymentId"u8)) { reader.Read(); ids = []; while (reader.Read() && reader.TokenType != JsonTokenType.EndArray) ids.Add(reader.GetString()!); }
            else if (reader.ValueTextEquals("bucketLevel"u8)) { reader.Read(); levels = []; while (reader.Read() && reader.TokenType != JsonTokenType.EndArray) levels.Add(reader.GetDecimal()); }
            else if (reader.ValueTextEquals("meteredAt"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String) once = reader.GetDateTimeOffset();
                else { times = []; while (reader.Read() && reader.TokenType != JsonTokenType.EndArray) times.Add(reader.GetDateTimeOffset()); }
            }
            else { reader.Read(); reader.Skip(); }
        }
        if (ids is null) return true;
        if (levels is null || levels.Count != ids.Count || once is null && (times is null || times.Count != ids.Count))
            throw new JsonException("A usage batch event's columns differ in length.");
        for (var i = 0; i < ids.Count; i++) buckets.Add((ids[i], levels[i], once ?? times![i]));
        return true;
    }

    /// <summary>The columns of <see cref="TokenCounts"/>, in its constructor's order, named as in every other usage JSON.</summary>
    static readonly byte[][] TokenColumns =
    [
        "records"u8.ToArray(), "promptTokens"u8.ToArray(), "cachedTokens"u8.ToArray(), "outputTokens"u8.ToArray(),
        "spilledRecords"u8.ToArray(), "spilledPromptTokens"u8.ToArray(), "spilledCachedTokens"u8.ToArray(), "spilledOutputTokens"u8.ToArray(),
    ];

    /// <summary>
    /// Every column but the three a bucket follower keeps (<c>ReadBuckets</c>): what a query leaves out of an event stored
    /// as <c>jsonb</c> (<c>data - names</c>, one decompression of it) so that PostgreSQL neither formats nor sends the rest.
    /// </summary>
    public static readonly string[] AllButBuckets =
    [
        "tenantId", "producers", .. TokenColumns.Select(c => Encoding.UTF8.GetString(c)), "weightedTokens", "firstStartedAt", "lastFinishedAt",
        "utilization", "tokensPerMinute", "months", "adapters",
    ];

    static long Count(in TokenCounts t, int column) => column switch
    {
        0 => t.Records,
        1 => t.PromptTokens,
        2 => t.CachedTokens,
        3 => t.OutputTokens,
        4 => t.SpilledRecords,
        5 => t.SpilledPromptTokens,
        6 => t.SpilledCachedTokens,
        _ => t.SpilledOutputTokens,
    };

    static int TokenColumn(ref Utf8JsonReader reader)
    {
        for (var c = 0; c < TokenColumns.Length; c++)
            if (reader.ValueTextEquals(TokenColumns[c])) return c;
        return -1;
    }

    delegate T ReadValue<out T>(ref Utf8JsonReader reader);

    static string? IdOrNull(ref Utf8JsonReader reader) => reader.TokenType == JsonTokenType.Null ? null : Columns.OfThisThread.Id(ref reader);

    static void Column<T>(ref Utf8JsonReader reader, List<T> values, ReadValue<T> read)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("A usage batch event's column is a JSON array.");
        values.Clear();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray) values.Add(read(ref reader));
    }

    static void Write(Utf8JsonWriter writer, ReadOnlySpan<byte> name, IReadOnlyList<UsageMetered> usage, Action<Utf8JsonWriter, UsageMetered> value)
    {
        writer.WriteStartArray(name);
        foreach (var u in usage) value(writer, u);
        writer.WriteEndArray();
    }

    static List<UsageMetered> Objects(ref Utf8JsonReader reader, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("A usage batch event's usage is a JSON array.");
        var usage = new List<UsageMetered>();
        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject) usage.Add(Single.Read(ref reader, typeof(UsageMetered), options));
        return usage;
    }

    /// <summary>Each deployment's producer ranges, as flat triples (producer, first, last), into an array of exactly its ranges.</summary>
    static void ReadProducers(ref Utf8JsonReader reader, Columns c)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("A usage batch event's column is a JSON array.");
        c.Producers.Clear();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException("A usage batch event's producers are JSON arrays.");
            c.Ranges.Clear();
            while (reader.Read() && reader.TokenType == JsonTokenType.String)
            {
                var producer = c.Id(ref reader);
                reader.Read();
                var first = reader.GetInt64();
                reader.Read();
                c.Ranges.Add(new ProducerRange(producer, first, reader.GetInt64()));
            }
            c.Producers.Add(c.Ranges.ToArray());
        }
    }
}
