using Throughput.Catalog;
using Throughput.Http;
using Throughput.Reservations;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class ReservationSpecs
{
    static PurchaseReservation Purchase(decimal ptu, ReservationTerm term) => new("gpt-4o", "eastus", DeploymentType.Global, ptu, term);

    static readonly ReservationPurchased AMonth =
        new("res-1", "acme", "gpt-4o", "eastus", DeploymentType.Global, 5, ReservationTerm.Month, 260m, "USD", Now, Now.AddMonths(1));

    [Fact]
    public void Given_a_tenant_when_reserving_a_month_then_it_runs_one_calendar_month_at_the_month_price() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => [Reserve.Decide(tenant, Gpt4o, Purchase(5, ReservationTerm.Month), "res-1", Now)])
            .Then(AMonth);

    [Fact]
    public void Given_a_tenant_when_reserving_a_year_then_the_year_price_applies() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => [Reserve.Decide(tenant, Gpt4o, Purchase(5, ReservationTerm.Year), "res-1", Now)])
            .Then(AMonth with { Term = ReservationTerm.Year, PricePerPtu = 2652m, EndsAt = Now.AddYears(1) });

    [Fact]
    public void Given_a_suspended_tenant_when_reserving_then_conflict() =>
        TenantStream.Given(AcmeCreated(), AcmeSuspended)
            .When(tenant => [Reserve.Decide(tenant, Gpt4o, Purchase(5, ReservationTerm.Year), "r", Now)])
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_tenant_when_reserving_an_amount_off_the_increment_then_unprocessable() =>
        TenantStream.Given(AcmeCreated())
            .When(tenant => [Reserve.Decide(tenant, Gpt4o, Purchase(0.15m, ReservationTerm.Year), "r", Now)])
            .ThenFails(RuleKind.Unprocessable);

    [Fact]
    public void Given_a_running_reservation_when_cancelled_then_conflict() =>
        ReservationStream.Given(AMonth)
            .When(reservation => Reserve.Cancel(reservation, Now.AddDays(29)))
            .ThenFails(RuleKind.Conflict);

    [Fact]
    public void Given_a_reservation_whose_term_has_ended_when_cancelled_then_ReservationCancelled() =>
        ReservationStream.Given(AMonth)
            .When(reservation => Reserve.Cancel(reservation, Now.AddMonths(1)))
            .Then(new ReservationCancelled("res-1", Now.AddMonths(1)));

    [Fact]
    public void A_reservation_is_active_from_its_start_until_its_end()
    {
        var reservation = ReservationStream.Given(AMonth).State;
        Assert.True(reservation.IsActiveAt(Now.AddDays(3)));
        Assert.False(reservation.IsActiveAt(Now.AddMonths(1)));
    }
}
