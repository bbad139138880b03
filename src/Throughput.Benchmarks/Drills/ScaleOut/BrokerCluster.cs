using System.Globalization;
using Throughput.Benchmarks.Harness;
using Throughput.Serving;

namespace Throughput.Benchmarks.Drills.ScaleOut;

/// <summary>A node of the drill's scratch RabbitMQ cluster: its name (<c>{Name}@{host}</c>) and AMQP port on this machine.</summary>
public sealed record BrokerNode(string Name, int Port);

/// <summary>
/// The scratch RabbitMQ cluster infra/drills/nodes.sh runs beside the shared broker: the drill kills and restarts its
/// nodes and asks one of them, through rabbitmqctl, who consumes the partition queues and where their leaders are.
/// </summary>
public sealed class BrokerCluster(IReadOnlyList<BrokerNode> nodes, string script)
{
    static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(3);

    public IReadOnlyList<BrokerNode> Nodes => nodes;

    /// <summary>Parses <c>name:port,name:port,…</c>.</summary>
    public static BrokerCluster Parse(string text, string script)
    {
        var parsed = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(n =>
        {
            var parts = n.Split(':');
            if (parts.Length != 2 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var port))
                throw new UsageException($"--nodes: '{n}' is not name:port");
            return new BrokerNode(parts[0], port);
        }).ToList();
        if (parsed.Count < 3) throw new UsageException("--nodes: a quorum that survives a node needs three nodes");
        if (!File.Exists(script)) throw new UsageException($"no {script}: pass --nodes-script");
        return new BrokerCluster(parsed, script);
    }

    /// <summary>How clients reach the cluster: every node on this machine, with the vhost and user of infra/env.sh.</summary>
    public BrokerSettings Settings
    {
        get
        {
            var local = Services.PlatformBroker();
            return local with { Host = "127.0.0.1", Port = nodes[0].Port, Nodes = string.Join(",", nodes.Select(n => $"127.0.0.1:{n.Port}")) };
        }
    }

    public BrokerNode Named(string name) => nodes.FirstOrDefault(n => n.Name == name) ?? throw new UsageException($"no node '{name}' in --nodes");

    /// <summary>SIGKILL of the node's Erlang VM.</summary>
    public Task KillAsync(BrokerNode node) => RunAsync(["rabbit-kill", node.Name]);

    /// <summary>Starts the node again; it rejoins the cluster it was part of, and its quorum replicas catch up.</summary>
    public Task StartAsync(BrokerNode node) => RunAsync(["rabbit-start", node.Name, node.Port.ToString(CultureInfo.InvariantCulture)]);

    /// <summary>The partition queues whose names start with <paramref name="queuePrefix"/>, as <paramref name="via"/> sees them.</summary>
    public async Task<ClusterState> StateAsync(BrokerNode via, string queuePrefix)
    {
        var output = await RunAsync(["rabbit-ctl", via.Name, "-q", "eval", StateScript(Settings.VirtualHost)]);
        return ClusterState.Parse(output, queuePrefix, via.Name, DateTimeOffset.UtcNow);
    }

    /// <summary>
    /// One rabbitmqctl call that joins consumers to their channels' connections inside the broker: pids printed by separate
    /// CLI calls are numbered per call and cannot be joined reliably. Each lookup runs on the pid's own node (asked from a
    /// node that had restarted, rabbit_channel:info on a remote channel returned timeout). A consumer whose node is down
    /// shows "-" and the reason.
    /// </summary>
    static string StateScript(string vhost) => $$"""
        VHost = <<"{{vhost.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)}}">>,
        Remote = fun(Pid, M, F, A) ->
          case rpc:call(node(Pid), M, F, A, 5000) of {badrpc, Reason} -> throw(Reason); Result -> Result end
        end,
        ConnName = fun(Conn) ->
          [{client_properties, Props}] = Remote(Conn, rabbit_networking, connection_info, [Conn, [client_properties]]),
          case lists:keyfind(<<"connection_name">>, 1, Props) of {_, longstr, N} -> N; _ -> <<"?">> end
        end,
        Name = fun(Ch) ->
          try
            [{connection, Conn}] = Remote(Ch, rabbit_channel, info, [Ch, [connection]]),
            ConnName(Conn)
          catch _:Reason -> iolist_to_binary(io_lib:format("-~w", [Reason])) end
        end,
        Nodes = fun(L) -> string:join([atom_to_list(N) || N <- L], ",") end,
        [io:format("consumer\t~s\t~s\t~s\t~s~n", [element(4, proplists:get_value(queue_name, C)), proplists:get_value(active, C),
                   node(proplists:get_value(channel_pid, C)), Name(proplists:get_value(channel_pid, C))])
         || C <- rabbit_amqqueue:consumers_all(VHost)],
        [begin
           I = rabbit_amqqueue:info(Q, [name, type, leader, members, online]),
           io:format("queue\t~s\t~s\t~s\t~s\t~s~n", [element(4, proplists:get_value(name, I)), proplists:get_value(type, I),
                     proplists:get_value(leader, I, ''), Nodes(proplists:get_value(members, I, [])), Nodes(proplists:get_value(online, I, []))])
         end || Q <- rabbit_amqqueue:list(VHost)],
        [io:format("connection\t~s\t~s~n", [node(P), try ConnName(P) catch _:_ -> <<"-">> end]) || P <- rabbit_networking:connections()],
        ok.
        """;

    Task<string> RunAsync(IReadOnlyList<string> arguments) => NodesScript.RunAsync(script, arguments, CommandTimeout, CancellationToken.None);
}
