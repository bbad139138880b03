using Throughput.Access;
using Throughput.Http;
using Throughput.Tenants;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class TenantSpecs
{
    [Fact]
    public void Given_no_tenant_when_created_then_TenantCreated() =>
        Assert.Equal([new TenantCreated("acme", "Acme", "USD", Now)], TenantDecisions.Create(null, "acme", "Acme", "USD", Now));

    [Fact]
    public void Given_the_same_tenant_when_created_again_then_nothing_happens() =>
        Assert.Empty(TenantDecisions.Create(ActiveTenant(), "acme", "Acme", "USD", Now));

    [Fact]
    public void Given_a_tenant_when_created_with_other_details_then_conflict() =>
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => TenantDecisions.Create(ActiveTenant(), "acme", "Other", "USD", Now)).Kind);

    [Fact]
    public void Given_a_tenant_when_a_key_is_issued_then_ApiKeyIssued_with_the_hash_only() =>
        Assert.Equal([new ApiKeyIssued("acme", "k1", Role.Tenant, "hash", Now)], TenantDecisions.IssueKey(ActiveTenant(), "k1", "hash", Now));

    [Fact]
    public void Given_an_issued_key_when_issued_again_then_conflict_because_the_secret_is_shown_once()
    {
        var tenant = ActiveTenant().Apply(new ApiKeyIssued("acme", "k1", Role.Tenant, "hash", Now));
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => TenantDecisions.IssueKey(tenant, "k1", "hash2", Now)).Kind);
    }

    [Fact]
    public void Given_an_issued_key_when_revoked_then_ApiKeyRevoked_and_the_key_is_no_longer_active()
    {
        var tenant = ActiveTenant().Apply(new ApiKeyIssued("acme", "k1", Role.Tenant, "hash", Now));
        var events = TenantDecisions.RevokeKey(tenant, "k1", Now);
        Assert.Equal([new ApiKeyRevoked("acme", "k1", Now)], events);
        Assert.Empty(tenant.Apply((ApiKeyRevoked)events[0]).ActiveKeys);
    }

    [Fact]
    public void Given_no_such_key_when_revoked_then_not_found() =>
        Assert.Equal(RuleKind.NotFound, Assert.Throws<RuleViolation>(() => TenantDecisions.RevokeKey(ActiveTenant(), "k9", Now)).Kind);

    [Fact]
    public void Given_an_active_tenant_when_suspended_then_TenantSuspended_and_suspending_again_is_a_no_op()
    {
        var events = TenantDecisions.Suspend(ActiveTenant(), "unpaid", Now);
        Assert.Equal([new TenantSuspended("acme", "unpaid", Now)], events);
        var suspended = ActiveTenant().Apply((TenantSuspended)events[0]);
        Assert.Empty(TenantDecisions.Suspend(suspended, "unpaid", Now));
        Assert.Throws<RuleViolation>(suspended.EnsureActive);
    }

    [Fact]
    public void Given_a_suspended_tenant_when_reinstated_then_TenantReinstated()
    {
        var suspended = ActiveTenant().Apply(new TenantSuspended("acme", "unpaid", Now));
        Assert.Equal([new TenantReinstated("acme", Now)], TenantDecisions.Reinstate(suspended, Now));
        Assert.Empty(TenantDecisions.Reinstate(ActiveTenant(), Now));
    }

    [Fact]
    public void Staff_keys_cannot_be_tenant_keys_and_are_issued_once()
    {
        Assert.Equal(RuleKind.Unprocessable, Assert.Throws<RuleViolation>(() => Staff.Issue(null, "k1", Role.Tenant, "x", "h", Now)).Kind);
        var issued = (StaffKeyIssued)Staff.Issue(null, "k1", Role.Finance, "books", "h", Now).Single();
        var staff = Staff.Create(issued);
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Staff.Issue(staff, "k1", Role.Finance, "books", "h", Now)).Kind);
        Assert.Equal([new StaffKeyRevoked("k1", Now)], Staff.Revoke(staff, "k1", Now));
        Assert.Equal(RuleKind.NotFound, Assert.Throws<RuleViolation>(() => Staff.Revoke(staff.Apply(new StaffKeyRevoked("k1", Now)), "k1", Now)).Kind);
    }

    [Fact]
    public void Api_key_tokens_parse_and_match_only_their_secret()
    {
        var secret = ApiKeySecrets.NewSecret();
        Assert.True(ApiKeySecrets.TryParse(ApiKeySecrets.Token("kabc", secret), out var keyId, out var parsed));
        Assert.Equal(("kabc", secret), (keyId, parsed));
        Assert.True(ApiKeySecrets.Matches(secret, ApiKeySecrets.Hash(secret)));
        Assert.False(ApiKeySecrets.Matches(secret + "x", ApiKeySecrets.Hash(secret)));
        Assert.False(ApiKeySecrets.TryParse("Bearer nonsense", out _, out _));
        Assert.False(ApiKeySecrets.TryParse("tpk_.x", out _, out _));
        Assert.NotEqual(secret, ApiKeySecrets.Hash(secret));
    }

    [Fact]
    public void No_tenant_id_can_name_another_kinds_stream()
    {
        string[] others =
        [
            Staff.StreamId, Throughput.Invoicing.InvoiceRegister.StreamId,
            Throughput.Invoicing.Invoice.IdFor("acme", new Throughput.Invoicing.BillingMonth(2026, 11)),
            Throughput.Deployments.Purchase.DeploymentIdFor("acme", "key"), Throughput.Deployments.Purchase.DeploymentIdFor("acme", null),
            Throughput.Reservations.Reserve.ReservationIdFor("acme", "key"), Throughput.Reservations.Reserve.ReservationIdFor("acme", null),
        ];
        foreach (var id in others) Assert.True(Tenant.IsReservedId(id), id);
        Assert.False(Tenant.IsReservedId("acme-inventory"));
    }
}
