using System.Buffers.Text;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// One non-blocking keep-alive HTTP/1.1 connection that sends prepared request bytes and reads the answer as it
/// arrives, one request at a time (no pipelining). The load's event loop calls <see cref="Receive"/> when the socket is
/// readable, so a request costs the generator a send, a receive and its share of a wait: a few syscalls, no thread hop.
/// On a 2-core machine the load generator's CPU is taken from the host it measures, as with wrk-style tools.
/// </summary>
public sealed class RawHttpConnection : IDisposable
{
    /// <summary><see cref="Receive"/>'s answer when the response is not complete yet.</summary>
    public const int Incomplete = 0;

    /// <summary><see cref="Receive"/>'s answer when the connection broke or the host closed it.</summary>
    public const int Broken = -1;

    static ReadOnlySpan<byte> HeaderEnd => "\r\n\r\n"u8;
    static ReadOnlySpan<byte> ContentLength => "\r\ncontent-length:"u8;
    static ReadOnlySpan<byte> Chunked => "\r\ntransfer-encoding: chunked"u8;

    readonly Socket _socket;
    byte[] _buffer = new byte[8192];
    int _filled;

    RawHttpConnection(Socket socket) => _socket = socket;

    /// <summary>The load's index of the request in flight on this connection; the load's own markers for none or an untimed one.</summary>
    public long InFlight { get; set; }

    /// <summary>The socket's file descriptor, for the load's epoll set.</summary>
    public int Descriptor => (int)_socket.SafeHandle.DangerousGetHandle();

    /// <summary>Connects (blocking: only at start and after a broken connection), then switches to non-blocking I/O.</summary>
    public static RawHttpConnection Open(EndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            socket.Connect(endpoint);
            socket.Blocking = false;
            return new RawHttpConnection(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A request as bytes: method, path, host, bearer key, and a JSON body if any.</summary>
    public static byte[] Request(string method, string pathAndQuery, string host, string bearer, ReadOnlySpan<byte> jsonBody)
    {
        var head = $"{method} {pathAndQuery} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\n" +
                   (jsonBody.IsEmpty && method == "GET" ? "" : $"Content-Type: application/json\r\nContent-Length: {jsonBody.Length}\r\n") + "\r\n";
        return [.. Encoding.ASCII.GetBytes(head), .. jsonBody];
    }

    /// <summary>Writes the whole request; false if the connection is broken.</summary>
    public bool Send(ReadOnlySpan<byte> request)
    {
        _filled = 0;
        while (!request.IsEmpty)
        {
            var sent = _socket.Send(request, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock) Thread.Yield(); // a full send buffer: not seen with requests this small
            else if (error != SocketError.Success) return false;
            request = request[sent..];
        }
        return true;
    }

    /// <summary>
    /// Reads what has arrived: the answer's status code once it is read in full, <see cref="Incomplete"/> while more is
    /// to come, or <see cref="Broken"/>.
    /// </summary>
    public int Receive()
    {
        while (true)
        {
            if (_filled == _buffer.Length) Array.Resize(ref _buffer, _buffer.Length * 2);
            var read = _socket.Receive(_buffer.AsSpan(_filled), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock) return Incomplete;
            if (error != SocketError.Success || read == 0) return Broken;
            _filled += read;
            if (Complete(_buffer.AsSpan(0, _filled)) is var status and not Incomplete) return status;
        }
    }

    public void Dispose() => _socket.Dispose();

    /// <summary>The status code if <paramref name="answer"/> holds a whole response, else <see cref="Incomplete"/>.</summary>
    static int Complete(ReadOnlySpan<byte> answer)
    {
        var bodyStart = answer.IndexOf(HeaderEnd);
        if (bodyStart < 0) return Incomplete;
        var head = answer[..(bodyStart + HeaderEnd.Length)];
        var body = answer[head.Length..];
        var whole = Header(head, ContentLength) is { } length
            ? body.Length >= length
            : IndexOfIgnoreCase(head, Chunked) < 0 || ChunkedBodyComplete(body);
        return whole ? Status(head) : Incomplete;
    }

    static int Status(ReadOnlySpan<byte> head) =>
        head.Length > 12 && Utf8Parser.TryParse(head.Slice(9, 3), out int status, out _) ? status : throw new IOException("not an HTTP/1.1 status line");

    /// <summary>A numeric header's value; the name is matched without regard to case, as HTTP requires.</summary>
    static int? Header(ReadOnlySpan<byte> head, ReadOnlySpan<byte> name)
    {
        var at = IndexOfIgnoreCase(head, name);
        if (at < 0) return null;
        var value = head[(at + name.Length)..];
        value = value[..value.IndexOf("\r\n"u8)].Trim((byte)' ');
        return Utf8Parser.TryParse(value, out int parsed, out _) ? parsed : throw new IOException("bad Content-Length");
    }

    static int IndexOfIgnoreCase(ReadOnlySpan<byte> text, ReadOnlySpan<byte> lowerCaseNeedle)
    {
        for (var i = 0; i + lowerCaseNeedle.Length <= text.Length; i++)
        {
            var match = true;
            for (var j = 0; j < lowerCaseNeedle.Length && match; j++) match = (text[i + j] | 0x20) == (lowerCaseNeedle[j] | 0x20);
            if (match) return i;
        }
        return -1;
    }

    /// <summary>Walks the chunks: size line, data, CRLF … until the zero-size chunk and its closing CRLF have arrived.</summary>
    static bool ChunkedBodyComplete(ReadOnlySpan<byte> body)
    {
        while (true)
        {
            var lineEnd = body.IndexOf("\r\n"u8);
            if (lineEnd < 0) return false;
            var sizeText = body[..lineEnd];
            if (sizeText.IndexOf((byte)';') is var extension and >= 0) sizeText = sizeText[..extension];
            if (!Utf8Parser.TryParse(sizeText, out int size, out _, 'x')) throw new IOException("bad chunk size");
            body = body[(lineEnd + 2)..];
            if (size == 0) return body.IndexOf("\r\n"u8) >= 0; // trailers, if any, end with an empty line
            if (body.Length < size + 2) return false;
            body = body[(size + 2)..];
        }
    }
}
