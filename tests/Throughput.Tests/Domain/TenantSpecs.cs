using Throughput.Access;
using Throughput.Http;
using Throughput.Tenants;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class TenantSpecs
{
    static readonly ApiKeyIssued KeyIssued = new("acme", "k1", Role.Tenant, "hash", Now);

    [Fact]
    public void Given_no_tenant_when_created_then_TenantCreated() =>
        TenantStream.Given()
            .When(tenant => TenantDecisions.Create(tenant, "acme", "Acme", "USD", Now))
            .Then(AcmeCreated());

    [Fact]
    public void Given_the_same_tenant_when_created_again_then_nothing_happens() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => TenantDecisions.Create(tenant, "acme", "Acme", "USD", Now))
            .ThenNothing();

    [Fact]
    public void Given_a_tenant_when_created_with_other_details_then_conflict() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => TenantDecisions.Create(tenant, "acme", "Other", "USD", Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_tenant_when_a_key_is_issued_then_ApiKeyIssued_with_the_hash_only() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => TenantDecisions.IssueKey(tenant, "k1", "hash", Now))
            .Then(KeyIssued);

    [Fact]
    public void Given_an_issued_key_when_issued_again_then_conflict_because_the_secret_is_shown_once() =>
        TenantStream.Given(AcmeCreated(), KeyIssued)
            .When(tenant => TenantDecisions.IssueKey(tenant, "k1", "hash2", Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_an_issued_key_when_revoked_then_ApiKeyRevoked() =>
        TenantStream.Given(AcmeCreated(), KeyIssued)
            .When(tenant => TenantDecisions.RevokeKey(tenant, "k1", Now))
            .Then(new ApiKeyRevoked("acme", "k1", Now));

    [Fact]
    public void A_revoked_key_is_no_longer_active() =>
        Assert.Empty(TenantStream.Given(AcmeCreated(), KeyIssued, new ApiKeyRevoked("acme", "k1", Now)).State.ActiveKeys);

    [Fact]
    public void Given_no_such_key_when_revoked_then_not_found() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => TenantDecisions.RevokeKey(tenant, "k9", Now))
            .ThenFails(RuleKind.NotFound);

    [Fact]
    public void Given_an_active_tenant_when_suspended_then_TenantSuspended() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => TenantDecisions.Suspend(tenant, "unpaid", Now))
            .Then(new TenantSuspended("acme", "unpaid", Now));

    [Fact]
    public void Given_a_suspended_tenant_when_suspended_again_then_nothing_happens() =>
        TenantStream.Given(AcmeCreated(), AcmeSuspended)
            .When(tenant => TenantDecisions.Suspend(tenant, "unpaid", Now))
            .ThenNothing();

    [Fact]
    public void A_suspended_tenant_is_not_active() =>
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(TenantStream.Given(AcmeCreated(), AcmeSuspended).State.EnsureActive).Kind);

    [Fact]
    public void Given_a_suspended_tenant_when_reinstated_then_TenantReinstated() =>
        TenantStream.Given(AcmeCreated(), AcmeSuspended)
            .When(tenant => TenantDecisions.Reinstate(tenant, Now))
            .Then(new TenantReinstated("acme", Now));

    [Fact]
    public void Given_an_active_tenant_when_reinstated_then_nothing_happens() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => TenantDecisions.Reinstate(tenant, Now))
            .ThenNothing();

    static readonly StaffKeyIssued FinanceKeyIssued = new("k1", Role.Finance, "books", "h", Now);

    [Fact]
    public void Given_no_staff_keys_when_a_tenant_key_is_issued_as_a_staff_key_then_unprocessable() =>
        StaffStream.Given()
            .When(staff => Staff.Issue(staff, "k1", Role.Tenant, "x", "h", Now))
            .ThenFails(RuleKind.Unprocessable);

    [Fact]
    public void Given_no_staff_keys_when_a_finance_key_is_issued_then_StaffKeyIssued() =>
        StaffStream.Given()
            .When(staff => Staff.Issue(staff, "k1", Role.Finance, "books", "h", Now))
            .Then(FinanceKeyIssued);

    [Fact]
    public void Given_an_issued_staff_key_when_issued_again_then_conflict() =>
        StaffStream.Given(FinanceKeyIssued)
            .When(staff => Staff.Issue(staff, "k1", Role.Finance, "books", "h", Now))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_an_issued_staff_key_when_revoked_then_StaffKeyRevoked() =>
        StaffStream.Given(FinanceKeyIssued)
            .When(staff => Staff.Revoke(staff, "k1", Now))
            .Then(new StaffKeyRevoked("k1", Now));

    [Fact]
    public void Given_a_revoked_staff_key_when_revoked_again_then_not_found() =>
        StaffStream.Given(FinanceKeyIssued, new StaffKeyRevoked("k1", Now))
            .When(staff => Staff.Revoke(staff, "k1", Now))
            .ThenFails(RuleKind.NotFound);

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
