using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;
using Throughput.Flywheel.Report;

namespace Throughput.Flywheel.Demo;

/// <summary>The batcher with its load and its bookkeeping: each step lets requests arrive, runs one fleet iteration, and tallies it.</summary>
public sealed class Simulation(Fleet fleet, Tally tally, IReadOnlyList<Arrivals> arrivals)
{
    public Fleet Fleet => fleet;

    public Tally Tally => tally;

    public IReadOnlyList<Arrivals> Arrivals => arrivals;

    public FleetStep Step(DateTimeOffset at)
    {
        foreach (var source in arrivals)
        {
            foreach (var request in source.Until(at)) fleet.Enqueue(request);
        }
        var step = fleet.Step(at);
        tally.Record(step);
        return step;
    }
}
