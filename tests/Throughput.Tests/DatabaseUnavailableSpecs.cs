using System.Net.Sockets;
using Npgsql;
using Throughput.Http;

namespace Throughput.Tests;

/// <summary>Which failures the metering consumer waits out instead of giving a batch up to the _error queue, and the API answers with 503.</summary>
public sealed class DatabaseUnavailableSpecs
{
    [Theory]
    [InlineData("57P01")] // terminating connection due to administrator command (a restart)
    [InlineData("57P02")] // crash shutdown
    [InlineData("57P03")] // the database system is starting up, or in recovery
    [InlineData("08006")] // connection failure
    [InlineData("25006")] // a write on a node that no longer (or not yet) takes writes, during a failover
    public void A_database_shutting_down_starting_up_or_losing_the_connection_is_waited_out(string sqlState) =>
        Assert.True(DatabaseOutage.Covers(new PostgresException("gone", "FATAL", "FATAL", sqlState)));

    [Fact]
    public void A_refused_connection_is_waited_out_however_deeply_it_is_wrapped() =>
        Assert.True(DatabaseOutage.Covers(
            new InvalidOperationException("the session cannot be used any further", new NpgsqlException("Failed to connect", new SocketException(111)))));

    [Fact]
    public void A_failover_group_with_no_node_taking_writes_is_waited_out() =>
        Assert.True(DatabaseOutage.Covers(new NpgsqlException("No suitable host was found.")));

    [Fact]
    public void One_unavailable_database_among_several_failures_is_enough() =>
        Assert.True(DatabaseOutage.Covers(new AggregateException(new FormatException(), new NpgsqlException("reading", new IOException("reset")))));

    [Theory]
    [InlineData("23505")] // unique violation
    [InlineData("42P01")] // undefined table
    [InlineData("22003")] // numeric out of range
    public void A_statement_the_database_refuses_is_not(string sqlState) =>
        Assert.False(DatabaseOutage.Covers(new PostgresException("refused", "ERROR", "ERROR", sqlState)));

    [Fact]
    public void A_bug_is_not() =>
        Assert.False(DatabaseOutage.Covers(new InvalidOperationException("bug", new ArgumentException("bad"))));
}
