using Marten;
using Throughput.Catalog;
using Throughput.Configuration;

namespace Throughput.Reservations;

public sealed class ReservationsModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(ReservationPurchased)] = "reservation_purchased",
        [typeof(ReservationCancelled)] = "reservation_cancelled",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(Reservation)];

    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout) => opts.Schema.For<Reservation>().Index(r => r.TenantId);

    public override void MapEndpoints(WebApplication app) => app.MapReservations(app.Services.GetRequiredService<ModelCatalog>());
}
