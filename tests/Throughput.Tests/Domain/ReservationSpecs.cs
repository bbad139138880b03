using Throughput.Catalog;
using Throughput.Http;
using Throughput.Reservations;
using Throughput.Tenants;
using static Throughput.Tests.Domain.Fixtures;

namespace Throughput.Tests.Domain;

public sealed class ReservationSpecs
{
    static PurchaseReservation Reserve(decimal ptu, ReservationTerm term) => new("gpt-4o", "eastus", DeploymentType.Global, ptu, term);

    [Fact]
    public void Given_a_tenant_when_reserving_a_month_then_it_runs_one_calendar_month_at_the_month_price() =>
        Assert.Equal(
            new ReservationPurchased("res-1", "acme", "gpt-4o", "eastus", DeploymentType.Global, 5, ReservationTerm.Month, 260m, "USD", Now, Now.AddMonths(1)),
            Throughput.Reservations.Reserve.Decide(ActiveTenant(), Gpt4o, Reserve(5, ReservationTerm.Month), "res-1", Now));

    [Fact]
    public void Given_a_tenant_when_reserving_a_year_then_the_year_price_applies() =>
        Assert.Equal(2652m, Throughput.Reservations.Reserve.Decide(ActiveTenant(), Gpt4o, Reserve(5, ReservationTerm.Year), "res-1", Now).PricePerPtu);

    [Fact]
    public void Given_a_suspended_tenant_or_a_bad_amount_when_reserving_then_refused()
    {
        Assert.Throws<RuleViolation>(() => Throughput.Reservations.Reserve.Decide(ActiveTenant().Apply(new TenantSuspended("acme", "x", Now)), Gpt4o, Reserve(5, ReservationTerm.Year), "r", Now));
        Assert.Equal(RuleKind.Unprocessable, Assert.Throws<RuleViolation>(() => Throughput.Reservations.Reserve.Decide(ActiveTenant(), Gpt4o, Reserve(0.15m, ReservationTerm.Year), "r", Now)).Kind);
    }

    [Fact]
    public void Given_a_running_reservation_when_cancelled_then_conflict_and_after_its_term_it_can_be()
    {
        var reservation = Reservation.Create(Throughput.Reservations.Reserve.Decide(ActiveTenant(), Gpt4o, Reserve(5, ReservationTerm.Month), "res-1", Now));
        Assert.Equal(RuleKind.Conflict, Assert.Throws<RuleViolation>(() => Throughput.Reservations.Reserve.Cancel(reservation, Now.AddDays(29))).Kind);
        var after = Now.AddMonths(1);
        Assert.Equal([new ReservationCancelled("res-1", after)], Throughput.Reservations.Reserve.Cancel(reservation, after));
        Assert.True(reservation.IsActiveAt(Now.AddDays(3)));
        Assert.False(reservation.IsActiveAt(after));
    }
}
