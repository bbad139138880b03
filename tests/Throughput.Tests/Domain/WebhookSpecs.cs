using Microsoft.Extensions.Configuration;
using Throughput.Capacity;
using Throughput.Deployments;
using Throughput.Invoicing;
using Throughput.Webhooks;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class WebhookSpecs
{
    static readonly IReadOnlyList<TimeSpan> Schedule = [TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(5), TimeSpan.FromHours(1)];

    static WebhookDelivery Pending() => new("whe_1:x", "whe_1", "msg_1", "deployment.resized", "dep-1", 7, "{}", Now, DeliveryStatus.Pending, Now, []);

    static WebhookEndpoint Endpoint(string? tenantId = "acme") =>
        WebhookEndpoint.Create(new WebhookEndpointRegistered("whe_1", tenantId, "https://hooks.example.com/in", ["deployment.resized"], null, "sealed-1", Now));

    [Fact]
    public void Signatures_match_the_Standard_Webhooks_example()
    {
        // The specification's published example: any Standard Webhooks library verifies what we send.
        Assert.Equal("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            Signatures.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "{\"test\": 2432232314}"));
    }

    [Fact]
    public void A_secret_sealed_at_rest_opens_only_with_the_operators_key()
    {
        var key = new byte[32];
        var secret = Signatures.NewSecret();
        var sealedSecret = new SecretBox(key).Seal(secret);
        Assert.DoesNotContain(secret[6..], sealedSecret, StringComparison.Ordinal);
        Assert.Equal(secret, new SecretBox(key).Open(sealedSecret));
        Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => new SecretBox(Enumerable.Repeat((byte)1, 32).ToArray()).Open(sealedSecret));
    }

    [Fact]
    public void Failed_attempts_wait_longer_each_time_and_give_up_when_the_schedule_is_spent()
    {
        var d = Pending();
        var waits = new List<TimeSpan>();
        for (var i = 0; i < Schedule.Count; i++)
        {
            d = d.After(Now, 503, null, Schedule, jitter: 0);
            Assert.Equal(DeliveryStatus.Pending, d.Status);
            waits.Add(d.Attempts[^1].RetryIn!.Value);
        }
        Assert.Equal(Schedule, waits);
        Assert.Equal(Now + Schedule[^1], d.NextAttemptAt);
        d = d.After(Now, null, "connection refused", Schedule, jitter: 0.5);
        Assert.Equal((DeliveryStatus.Failed, 4), (d.Status, d.Attempts.Count));
    }

    [Fact]
    public void Jitter_only_lengthens_a_wait_by_up_to_a_fifth()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), Pending().After(Now, 500, null, Schedule, jitter: 0).Attempts[0].RetryIn);
        Assert.Equal(TimeSpan.FromSeconds(6), Pending().After(Now, 500, null, Schedule, jitter: 1).Attempts[0].RetryIn);
    }

    [Fact]
    public void The_default_schedule_gives_a_receiver_at_least_a_day_to_come_back_whatever_the_jitter()
    {
        // Each wait is linear in the jitter, drawn from [0, 1): its ends bound the span.
        var spans = new[] { 0, 0.5, 1 }.Select(jitter =>
        {
            var d = Pending();
            while (d.Status == DeliveryStatus.Pending) d = d.After(d.NextAttemptAt, 503, null, WebhookSettings.DefaultRetrySchedule, jitter);
            return d.Attempts[^1].At - d.Attempts[0].At;
        }).ToList();
        Assert.True(spans.Min() >= TimeSpan.FromHours(24), $"given up after {spans.Min()} at the shortest");
    }

    [Fact]
    public void Any_2xx_delivers()
    {
        var d = Pending().After(Now, 500, null, Schedule, 0.5).After(Now, 204, null, Schedule, 0.5);
        Assert.Equal((DeliveryStatus.Delivered, 2), (d.Status, d.Attempts.Count));
    }

    [Fact]
    public void A_rotated_out_secret_signs_beside_the_new_one_for_its_grace_only()
    {
        var e = Endpoint();
        foreach (var change in WebhookEndpoint.Rotate(e, "sealed-2", Now)) e = e.Then(change);
        Assert.Equal(["sealed-2", "sealed-1"], e.SigningSecrets(Now.AddHours(23)));
        Assert.Equal(["sealed-2"], e.SigningSecrets(Now + WebhookEndpoint.RotationGrace));
        var header = Signatures.Header([Signatures.NewSecret(), Signatures.NewSecret()], "msg_1", 1, "{}");
        Assert.Equal(2, header.Split(' ').Length);
    }

    [Fact]
    public void A_tenants_endpoint_hears_only_its_tenant_an_operators_every_tenant_and_a_disabled_one_keeps_hearing()
    {
        Assert.True(Endpoint().Hears("deployment.resized", "acme"));
        Assert.False(Endpoint().Hears("deployment.resized", "globex"));
        Assert.False(Endpoint().Hears("invoice.issued", "acme"));
        Assert.True(Endpoint(tenantId: null).Hears("deployment.resized", "globex"));
        var disabled = WebhookEndpoint.Switch(Endpoint(), false, Now).Aggregate(Endpoint(), (s, e) => s.Then(e));
        Assert.True(disabled.Hears("deployment.resized", "acme")); // queued, held until enabled
        Assert.False(disabled.Enabled);
        Assert.Empty(WebhookEndpoint.Switch(disabled, false, Now));
    }

    [Theory]
    [InlineData("https://hooks.example.com/in", null)]
    [InlineData("https://a.partner.test/in", null)]
    [InlineData("http://hooks.example.com/in", "Must be https (the operator has not allowed plain http).")]
    [InlineData("https://127.0.0.1/in", "The host '127.0.0.1' is not one the operator allows webhooks to (Webhooks:AllowedHosts).")]
    [InlineData("https://evil.com/?x=hooks.example.com", "The host 'evil.com' is not one the operator allows webhooks to (Webhooks:AllowedHosts).")]
    [InlineData("https://partner.test.evil.com/", "The host 'partner.test.evil.com' is not one the operator allows webhooks to (Webhooks:AllowedHosts).")]
    [InlineData("https://user:pw@hooks.example.com/", "Must not carry credentials; the signature authenticates the platform.")]
    [InlineData("ftp://hooks.example.com/", "Must be an absolute https URL.")]
    public void Only_hosts_the_operator_allowed_receive(string url, string? refusal)
    {
        var settings = WebhookSettings.FromConfiguration(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Webhooks:AllowedHosts"] = "hooks.example.com, *.partner.test",
            ["Webhooks:SecretKey"] = Convert.ToBase64String(new byte[32]),
        }).Build());
        Assert.Equal(refusal, settings.Refuses(url));
    }

    [Fact]
    public void Without_allowed_hosts_nothing_is_sent_and_a_key_is_required_with_them()
    {
        Assert.False(WebhookSettings.FromConfiguration(new ConfigurationBuilder().Build()).Sends);
        Assert.Throws<InvalidOperationException>(() => WebhookSettings.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Webhooks:AllowedHosts"] = "hooks.example.com" }).Build()));
    }

    [Theory]
    [InlineData("00:00:05,00:05:00,23:00:00", null, "retries for 23:05:05 in all")]
    [InlineData("00:00:01,00:00:02", "true", null)]
    [InlineData("12:00:00,12:00:00", null, null)]
    [InlineData("00:00:05,00:00:00,24:00:00", null, "every wait must be longer than 0")]
    public void A_retry_schedule_spans_the_promised_day_unless_a_test_says_otherwise(string schedule, string? allowShort, string? refusal)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Webhooks:RetrySchedule"] = schedule,
            ["Webhooks:AllowShortRetrySchedule"] = allowShort,
        }).Build();
        if (refusal is null) Assert.Equal(schedule.Split(',').Length, WebhookSettings.FromConfiguration(configuration).RetrySchedule.Count);
        else Assert.Contains(refusal, Assert.Throws<InvalidOperationException>(() => WebhookSettings.FromConfiguration(configuration)).Message);
    }

    [Fact]
    public void Deployment_events_belong_to_the_deployments_tenant_and_keep_its_order_billing_documents_the_tenants()
    {
        var tenants = new Dictionary<string, string> { ["dep-1"] = "acme" };
        Assert.Equal(("acme", "dep-1"), WebhookEventTypes.OwnerOf(new DeploymentThrottled("dep-1", 1.02m, 500, Now), tenants));
        Assert.Equal(("acme", "dep-1"), WebhookEventTypes.OwnerOf(new ThrottleLifted("dep-1", 0.5m, 0.5m, Now), tenants));
        Assert.Equal(("globex", "dep-9"), WebhookEventTypes.OwnerOf(Created() with { DeploymentId = "dep-9", TenantId = "globex" }, tenants));
        var invoice = new InvoiceIssued("inv-1", 1, "INV-1", "acme", "2026-11", "USD", Now, Now, [], 0, Now, "automatic");
        Assert.Equal(("acme", "acme"), WebhookEventTypes.OwnerOf(invoice, tenants));
        Assert.Equal("invoice.issued", WebhookEventTypes.Names[typeof(InvoiceIssued)]);
        Assert.Equal(WebhookEventTypes.Names.Count + 1, WebhookEventTypes.All.Count); // one wire name per event, and deployment.degraded
    }

    [Fact]
    public void A_placement_that_leaves_ptus_unplaced_is_also_sent_as_degraded_and_a_full_one_is_not()
    {
        var degradedOnly = WebhookEndpoint.Create(new WebhookEndpointRegistered("whe_2", "acme", "https://hooks.example.com/in", [WebhookEventTypes.Degraded], null, "sealed-1", Now));
        var degraded = new DeploymentPlaced("dep-1", [new PlacedPtu("eastus", 6)], 4, "drain of westus", Now);
        var whole = degraded with { Shares = [new PlacedPtu("eastus", 10)], UnplacedPtu = 0, Reason = "capacity restored" };

        Assert.Equal(["deployment.placed", "deployment.degraded"], WebhookEventTypes.TypesOf(degraded));
        Assert.Equal(["deployment.degraded"], WebhookEventTypes.TypesOf(degraded).Where(t => degradedOnly.Hears(t, "acme")));
        Assert.Equal(["deployment.placed"], WebhookEventTypes.TypesOf(whole));
        Assert.DoesNotContain(WebhookEventTypes.TypesOf(whole), t => degradedOnly.Hears(t, "acme"));
        Assert.Contains(WebhookEventTypes.Degraded, WebhookEventTypes.All);
    }
}
