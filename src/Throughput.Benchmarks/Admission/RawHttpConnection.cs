using System.Buffers.Text;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Throughput.Benchmarks.Admission;

/// <summary>
/// One keep-alive HTTP/1.1 connection that sends prepared request bytes and reads the whole answer, one request at a
/// time (no pipelining). It spends a few microseconds per request where HttpClient spends tens: on a 2-core machine the
/// load generator's CPU is taken from the host it measures, as with wrk-style tools.
/// </summary>
public sealed class RawHttpConnection : IDisposable
{
    static ReadOnlySpan<byte> HeaderEnd => "\r\n\r\n"u8;
    static ReadOnlySpan<byte> ContentLength => "\r\ncontent-length:"u8;
    static ReadOnlySpan<byte> Chunked => "\r\ntransfer-encoding: chunked"u8;

    readonly Socket _socket;
    byte[] _buffer = new byte[8192];

    RawHttpConnection(Socket socket) => _socket = socket;

    public static async Task<RawHttpConnection> OpenAsync(EndPoint endpoint, CancellationToken ct)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endpoint, ct);
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

    /// <summary>Sends the request and returns the answer's status code once its body is read in full.</summary>
    public async ValueTask<int> SendAsync(ReadOnlyMemory<byte> request, CancellationToken ct)
    {
        await _socket.SendAsync(request, SocketFlags.None, ct);
        var filled = 0;
        int bodyStart;
        while ((bodyStart = _buffer.AsSpan(0, filled).IndexOf(HeaderEnd)) < 0) filled = await ReceiveAsync(filled, ct);
        bodyStart += HeaderEnd.Length;
        var status = Status(_buffer.AsSpan(0, bodyStart));
        if (Header(_buffer.AsSpan(0, bodyStart), ContentLength) is { } length)
        {
            while (filled < bodyStart + length) filled = await ReceiveAsync(filled, ct);
        }
        else if (IndexOfIgnoreCase(_buffer.AsSpan(0, bodyStart), Chunked) >= 0)
        {
            while (!ChunkedBodyComplete(_buffer.AsSpan(bodyStart, filled - bodyStart))) filled = await ReceiveAsync(filled, ct);
        }
        return status;
    }

    public void Dispose() => _socket.Dispose();

    async ValueTask<int> ReceiveAsync(int filled, CancellationToken ct)
    {
        if (filled == _buffer.Length) Array.Resize(ref _buffer, _buffer.Length * 2);
        var read = await _socket.ReceiveAsync(_buffer.AsMemory(filled), SocketFlags.None, ct);
        if (read == 0) throw new IOException("the host closed the connection");
        return filled + read;
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
