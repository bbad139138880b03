using System.Text.Json;
using System.Text.Json.Serialization;
using Marten;
using RabbitMQ.Client;
using Throughput.Contracts;
using Throughput.Deployments;
using Throughput.Configuration;
using Throughput.Tenants;

namespace Throughput.Admission;

/// <summary>
/// Publishes deployments' current admission limits to the topic exchange serving nodes bind to, once per region the
/// deployment is served from (bought in or placed in). It always sends the current state with its version, so repeats
/// and reordering are harmless: nodes keep the highest version.
/// </summary>
public sealed class AdmissionPush(ServiceSettings settings, TimeProvider clock, ILogger<AdmissionPush> log) : IAsyncDisposable
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    readonly SemaphoreSlim _gate = new(1, 1);
    IConnection? _connection;
    IChannel? _channel;

    public string Exchange { get; init; } = AdmissionTopology.Exchange;

    /// <summary>Loads the deployments and their tenants and publishes their current limits, with confirms.</summary>
    public async Task PublishCurrentAsync(IQuerySession session, IReadOnlyCollection<string> deploymentIds, CancellationToken ct)
    {
        if (deploymentIds.Count == 0) return;
        var deployments = await DeploymentMeters.LoadDeploymentsAsync(session, deploymentIds, ct);
        var tenantIds = deployments.Select(d => d.TenantId).Distinct().ToArray();
        var tenants = (await session.LoadManyAsync<Tenant>(ct, tenantIds)).ToDictionary(t => t.Id);
        var now = clock.GetUtcNow();
        await PublishAsync(deployments.Select(d => (AdmissionLimits.Of(d, tenants.GetValueOrDefault(d.TenantId), now), d.ServedRegions())), ct);
    }

    /// <summary>
    /// Publishes after the caller's commit without holding it back. Best effort: the forwarder subscription delivers every
    /// change again from the log.
    /// </summary>
    public void PublishInBackground(IReadOnlyCollection<(AdmissionLimitChanged Limit, IReadOnlyList<string> Regions)> limits) =>
        _ = Task.Run(async () =>
        {
            try
            {
                await PublishAsync(limits, CancellationToken.None);
            }
            catch (Exception e)
            {
                log.LogWarning(e, "Pushing {Count} admission limits after commit failed; the forwarder subscription will deliver them", limits.Count);
            }
        }, CancellationToken.None);

    /// <summary>
    /// How long one call may wait for the broker. Every push goes through one channel in turn: a confirm that never came
    /// would otherwise hold back every later push, the forwarder's included.
    /// </summary>
    public static readonly TimeSpan BrokerTimeout = TimeSpan.FromSeconds(10);

    public async Task PublishAsync(IEnumerable<(AdmissionLimitChanged Limit, IReadOnlyList<string> Regions)> limits, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(BrokerTimeout);
        try
        {
            await _gate.WaitAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"the admission channel stayed busy for {BrokerTimeout.TotalSeconds:0} s");
        }
        try
        {
            var channel = await ChannelAsync(timeout.Token);
            var properties = new BasicProperties
            {
                ContentType = AdmissionTopology.ContentType,
                UserId = settings.RabbitUser, // nodes take pushes only from the platform's user, which the broker vouches for
                Headers = new Dictionary<string, object?> { [AdmissionTopology.VersionHeader] = AdmissionTopology.CurrentVersion },
            };
            foreach (var (limit, regions) in limits)
            {
                var body = JsonSerializer.SerializeToUtf8Bytes(limit, Json);
                foreach (var region in regions)
                    await channel.BasicPublishAsync(Exchange, AdmissionTopology.RoutingKey(region, limit.Model, limit.DeploymentId), false, properties, body, timeout.Token);
            }
        }
        catch (Exception e) when (e is RabbitMQ.Client.Exceptions.RabbitMQClientException or IOException)
        {
            await ResetAsync();
            throw;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // The broker did not confirm in time: a fresh channel for the next call, and the caller retries (the forwarder) or logs.
            await ResetAsync();
            throw new TimeoutException($"the broker did not confirm an admission push within {BrokerTimeout.TotalSeconds:0} s");
        }
        finally
        {
            _gate.Release();
        }
    }

    async Task<IChannel> ChannelAsync(CancellationToken ct)
    {
        if (_channel is { IsOpen: true }) return _channel;
        await ResetAsync();
        var factory = new ConnectionFactory { Uri = settings.RabbitUri, ClientProvidedName = "throughput-admission-push" };
        _connection = await factory.CreateConnectionAsync(settings.RabbitEndpoints, ct);
        _channel = await _connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), ct);
        await _channel.ExchangeDeclareAsync(Exchange, AdmissionTopology.ExchangeType, durable: true, autoDelete: false, cancellationToken: ct);
        return _channel;
    }

    async Task ResetAsync()
    {
        try
        {
            if (_channel is not null) await _channel.DisposeAsync();
            if (_connection is not null) await _connection.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or RabbitMQ.Client.Exceptions.RabbitMQClientException)
        {
            log.LogDebug(e, "Closing a broken admission channel");
        }
        _channel = null;
        _connection = null;
    }

    public async ValueTask DisposeAsync()
    {
        await ResetAsync();
        _gate.Dispose();
    }
}
