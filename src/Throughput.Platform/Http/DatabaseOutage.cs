using Npgsql;

namespace Throughput.Http;

/// <summary>
/// PostgreSQL could not be reached, or went away mid-transaction (shut down, crashed, starting up, failing over, connection
/// lost): a state of the database that waiting cures, unlike a bug or bad data. The metering consumer waits it out; the API
/// answers 503 with Retry-After.
/// </summary>
public static class DatabaseOutage
{
    public static bool Covers(Exception exception) => exception switch
    {
        // 25006: a write reached a node that no longer takes writes (demoted, or promoted but not yet confirmed).
        PostgresException pg => pg.IsTransient || pg.SqlState.StartsWith("57P", StringComparison.Ordinal) || pg.SqlState.StartsWith("08", StringComparison.Ordinal) ||
                                pg.SqlState == PostgresErrorCodes.ReadOnlySqlTransaction,
        NpgsqlException npgsql when npgsql.IsTransient => true,
        // Every node of a failover group answered and none takes writes: the moment between a primary's loss and a promotion.
        NpgsqlException { InnerException: null } npgsql when npgsql.Message.StartsWith("No suitable host", StringComparison.Ordinal) => true,
        AggregateException all => all.InnerExceptions.Any(Covers),
        { InnerException: { } inner } => Covers(inner),
        _ => false,
    };
}
