using System.Net;
using System.Net.Sockets;

namespace Throughput.IntegrationTests;

/// <summary>
/// A TCP link between a platform process and PostgreSQL that a test can cut — open connections reset, new ones refused,
/// as a database crash looks from the host — and restore, without touching the shared server other work is using.
/// </summary>
public sealed class DatabaseLink : IAsyncDisposable
{
    readonly int _databasePort;
    readonly Lock _gate = new();
    readonly List<TcpClient> _open = [];
    TcpListener? _listener;

    DatabaseLink(int databasePort, int port)
    {
        _databasePort = databasePort;
        Port = port;
    }

    /// <summary>Where the platform connects instead of PostgreSQL.</summary>
    public int Port { get; }

    public static DatabaseLink To(int databasePort)
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var link = new DatabaseLink(databasePort, ((IPEndPoint)probe.LocalEndpoint).Port);
        probe.Stop();
        link.Restore();
        return link;
    }

    /// <summary>Resets every open connection and refuses new ones until <see cref="Restore"/>.</summary>
    public void Cut()
    {
        lock (_gate)
        {
            _listener?.Stop();
            _listener = null;
            foreach (var client in _open)
            {
                client.LingerState = new LingerOption(true, 0); // close with a reset, as a crashed server's kernel does
                client.Dispose();
            }
            _open.Clear();
        }
    }

    public void Restore()
    {
        lock (_gate)
        {
            if (_listener is not null) return;
            var listener = new TcpListener(IPAddress.Loopback, Port);
            listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Start();
            _listener = listener;
            _ = Task.Run(() => AcceptAsync(listener));
        }
    }

    public ValueTask DisposeAsync()
    {
        Cut();
        return ValueTask.CompletedTask;
    }

    async Task AcceptAsync(TcpListener listener)
    {
        while (true)
        {
            TcpClient platform;
            try
            {
                platform = await listener.AcceptTcpClientAsync();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return; // cut
            }
            var database = new TcpClient();
            try
            {
                await database.ConnectAsync(IPAddress.Loopback, _databasePort);
            }
            catch (SocketException)
            {
                platform.Dispose();
                database.Dispose();
                continue;
            }
            lock (_gate)
            {
                _open.Add(platform);
                _open.Add(database);
            }
            _ = Task.Run(() => PumpAsync(platform, database));
        }
    }

    async Task PumpAsync(TcpClient platform, TcpClient database)
    {
        try
        {
            await Task.WhenAny(platform.GetStream().CopyToAsync(database.GetStream()), database.GetStream().CopyToAsync(platform.GetStream()));
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            // Cut, or one side closed.
        }
        lock (_gate)
        {
            _open.Remove(platform);
            _open.Remove(database);
        }
        platform.Dispose();
        database.Dispose();
    }
}
