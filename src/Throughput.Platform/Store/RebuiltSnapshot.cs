using JasperFx.Events;
using JasperFx.Events.Grouping;
using Marten;
using Marten.Events.Aggregation;

namespace Throughput.Store;

/// <summary>
/// A write-side snapshot folded in the single pass of a full rebuild (<see cref="Configuration.ProjectionLayout.SinglePassRebuild"/>). A member
/// of a composite is handed every event of each page, and Marten's snapshot slices all of them by stream: every snapshot
/// would group each page's thousands of usage events, look up a document for each deployment stream and fold nothing.
/// This one slices only the events its aggregate folds.
/// </summary>
public sealed class RebuiltSnapshot<T> : SingleStreamProjection<T, string> where T : notnull
{
    public override IEventSlicer BuildSlicer(IQuerySession session) =>
        new TenantedEventSlicer<T, string>(new FoldedEventsByStream([.. IncludedEventTypes])) { ForceSingleTenancy = true };

    sealed class FoldedEventsByStream(HashSet<Type> folded) : IEventSlicer<T, string>
    {
        public ValueTask SliceAsync(IReadOnlyList<IEvent> events, SliceGroup<T, string> grouping)
        {
            foreach (var e in events)
                if (folded.Contains(e.EventType)) grouping.AddEvent(e.StreamKey!, e);
            return ValueTask.CompletedTask;
        }
    }
}
