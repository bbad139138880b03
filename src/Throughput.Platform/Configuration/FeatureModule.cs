using Marten;
using Marten.Events.Projections;

namespace Throughput.Configuration;

/// <summary>Where the write-side snapshots are folded: inline as events are appended (every host), or in the read models' single pass of a full rebuild.</summary>
public enum ProjectionLayout
{
    Live,
    SinglePassRebuild,
}

/// <summary>
/// What one feature folder brings to the platform: its services, its event types under their stored names, the snapshots
/// of its aggregates, its documents' columns and indexes, its read models and its endpoints. The host registers every
/// module's parts, and a rebuild configures its own store from the same modules, so nothing is listed twice.
/// </summary>
public abstract class FeatureModule
{
    /// <summary>Stored event names are part of the data: they never follow a class rename.</summary>
    public virtual IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>();

    /// <summary>Write-side aggregates kept as snapshots: inline live, folded by the read models' pass in a rebuild.</summary>
    public virtual IReadOnlyList<Type> Snapshots { get; } = [];

    public virtual void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
    }

    /// <summary>Columns, indexes and schema objects of the feature's documents; runs after the store's connection and schema are set.</summary>
    public virtual void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
    }

    /// <summary>The feature's members of the read models' composite projection (<see cref="ReadModels.Name"/>).</summary>
    public virtual void AddReadModels(CompositeProjection readModels, StoreOptions opts, ProjectionLayout layout)
    {
    }

    /// <summary>
    /// The feature's read models of usage over time, per deployment and minute or hour: members of the usage series'
    /// composite live (<see cref="ReadModels.SeriesName"/>), of the read models' in the rebuild command's one pass.
    /// </summary>
    public virtual void AddUsageSeries(CompositeProjection series, StoreOptions opts)
    {
    }

    /// <summary>Mapped on hosts with the Api role.</summary>
    public virtual void MapEndpoints(WebApplication app)
    {
    }
}
