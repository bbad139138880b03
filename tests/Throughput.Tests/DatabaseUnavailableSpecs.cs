using System.Net.Sockets;
using Npgsql;
using Throughput.Metering;

namespace Throughput.Tests;

/// <summary>Which failures the metering consumer waits out instead of giving a batch up to the _error queue.</summary>
public sealed class DatabaseUnavailableSpecs
{
    [Theory]
    [InlineData("57P01")] // terminating connection due to administrator command (a restart)
    [InlineData("57P02")] // crash shutdown
    [InlineData("57P03")] // the database system is starting up, or in recovery
    [InlineData("08006")] // connection failure
    public void A_database_shutting_down_starting_up_or_losing_the_connection_is_waited_out(string sqlState) =>
        Assert.True(MeteringTransport.DatabaseUnavailable(new PostgresException("gone", "FATAL", "FATAL", sqlState)));

    [Fact]
    public void A_refused_connection_is_waited_out_however_deeply_it_is_wrapped() =>
        Assert.True(MeteringTransport.DatabaseUnavailable(
            new InvalidOperationException("the session cannot be used any further", new NpgsqlException("Failed to connect", new SocketException(111)))));

    [Fact]
    public void One_unavailable_database_among_several_failures_is_enough() =>
        Assert.True(MeteringTransport.DatabaseUnavailable(new AggregateException(new FormatException(), new NpgsqlException("reading", new IOException("reset")))));

    [Theory]
    [InlineData("23505")] // unique violation
    [InlineData("42P01")] // undefined table
    [InlineData("22003")] // numeric out of range
    public void A_statement_the_database_refuses_is_not(string sqlState) =>
        Assert.False(MeteringTransport.DatabaseUnavailable(new PostgresException("refused", "ERROR", "ERROR", sqlState)));

    [Fact]
    public void A_bug_is_not() =>
        Assert.False(MeteringTransport.DatabaseUnavailable(new InvalidOperationException("bug", new ArgumentException("bad"))));
}
