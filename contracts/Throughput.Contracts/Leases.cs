namespace Throughput.Contracts;

/// <summary>
/// Body of <c>POST /v1/admission/leases</c>: what one serving process asks of each deployment it serves. The process is
/// the producer its key was issued for (the key's name), so it can renew only its own leases, and only for deployments its
/// registration covers. Renewing every <see cref="AdmissionLeaseTopology.RenewInterval"/> keeps the leases alive; a
/// deployment left out stops being renewed and its lease expires. Schema: contracts/schemas/admission-lease.v1.json.
/// </summary>
/// <param name="Demands">Each deployment the process serves, with its demand; 1 to 1,000.</param>
public sealed record AdmissionLeaseRenewal(IReadOnlyList<AdmissionDemand> Demands);

/// <param name="TokensPerMinute">
/// Weighted tokens per minute the process was asked for over the last second or so, admitted or refused: the estimates of
/// every request it decided on. Above its share it may be anything (retries inflate it); below, it should be what it uses.
/// </param>
/// <param name="DeploymentId">The deployment the replica serves.</param>
/// <param name="HeldTokensPerMinute">
/// The share of the rate the process holds now (its lease's, 0 with none). Optional: a lease owner that has just taken over
/// keeps, for one <see cref="AdmissionLeaseTopology.Ttl"/>, every share at no more than its holder says it holds, since it
/// cannot know what its predecessor handed out; a process that does not say is taken to hold nothing meanwhile.
/// </param>
/// <param name="HeldBurstTokens">The share of the burst the process holds now (its lease's, 0 with none). Optional, as above.</param>
/// <param name="HeldVersion">The version of the lease the process holds (0 with none): the next lease's version is higher. Optional.</param>
public sealed record AdmissionDemand(string DeploymentId, long TokensPerMinute, long? HeldTokensPerMinute = null, long? HeldBurstTokens = null,
    long? HeldVersion = null);

/// <summary>
/// One serving process's share of a deployment's rate and burst: the answer to a renewal (one per deployment renewed) and
/// what <c>GET /v1/admission/leases/{deploymentId}</c> lists. The shares of a deployment's live leases never sum to more
/// than its <see cref="AdmissionLimitChanged.TokensPerMinute"/> and <see cref="AdmissionLimitChanged.BurstTokens"/>.
/// A process admits within its lease as it would within the whole limit; the limit's state (throttled, suspended…) still rules.
/// </summary>
/// <param name="ReplicaId">The producer id of the process holding the lease.</param>
/// <param name="TokensPerMinute">The share of the deployment's rate this process may admit.</param>
/// <param name="BurstTokens">The share of the deployment's bucket depth: the process's own bucket holds no more.</param>
/// <param name="DemandTokensPerMinute">The demand this lease was sized for, as the process last reported it.</param>
/// <param name="Replicas">Processes holding a live lease on the deployment, this one included.</param>
/// <param name="Version">Grows with every lease handed out for the deployment (milliseconds since the epoch at least, so it also grows across a platform restart): keep the highest seen.</param>
/// <param name="ExpiresAt">The platform gives the share to others after this unless the process renews.</param>
/// <param name="DeploymentId">The deployment the lease is a share of.</param>
public sealed record AdmissionLease(
    string DeploymentId,
    string ReplicaId,
    long TokensPerMinute,
    long BurstTokens,
    long DemandTokensPerMinute,
    int Replicas,
    long Version,
    DateTimeOffset ExpiresAt);

/// <summary>The lease protocol's timing, as the platform runs it by default.</summary>
public static class AdmissionLeaseTopology
{
    public const int CurrentVersion = 1;

    /// <summary>
    /// Where a lease that grew is pushed (raw JSON <see cref="AdmissionLease"/>, from the platform's broker user), with the
    /// routing keys of <see cref="AdmissionTopology.RoutingKey"/>, once per region the deployment is served from. Every node
    /// bound there receives every replica's leases of the deployment and keeps its own. A topic exchange of its own, so
    /// nodes that do not take leases never see one.
    /// </summary>
    public const string Exchange = "throughput.admission.leases";

    /// <summary>How often a serving process renews: a share moves within about two renewals.</summary>
    public static readonly TimeSpan RenewInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>A lease not renewed for this long is gone and its share goes to the others at their next renewal.</summary>
    public static readonly TimeSpan Ttl = TimeSpan.FromMilliseconds(1500);
}
