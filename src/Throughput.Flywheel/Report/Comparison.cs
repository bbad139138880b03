namespace Throughput.Flywheel.Report;

/// <summary>One customer on one fleet: its served ÷ purchased over the windows compared, and its requests' latencies in them.</summary>
public sealed record CustomerFigures(string Name, SteadyState Steady, double WindowSpread, Latencies Latencies);

/// <summary>
/// The two fleets side by side, per customer, over the same windows: those in which the customer was steady on the
/// Flywheel fleet (backlogged, its burst allowance spent, no rate change settling). The whole-prompt fleet's figures are
/// taken over the same windows, whatever they were on that fleet, so both describe the same minutes of the same load.
/// </summary>
public static class Comparison
{
    public static (IReadOnlyList<CustomerFigures> Flywheel, IReadOnlyList<CustomerFigures> WholePrompt) Of(
        Tally flywheel, Tally wholePrompt, TimeSpan window, DateTimeOffset end)
    {
        List<CustomerFigures> fly = [], whole = [];
        foreach (var (track, other) in flywheel.Tracks.Zip(wholePrompt.Tracks))
        {
            var steady = WindowReport.Steady(flywheel, track, window, end);
            fly.Add(Figures(flywheel, track, steady));
            var same = WindowReport.Of(wholePrompt, other, window, end).Where(w => steady.Windows.Any(s => s.Index == w.Index)).ToList();
            whole.Add(Figures(wholePrompt, other, new SteadyState(other.Name, other.DeploymentId, same)));
        }
        return (fly, whole);
    }

    static CustomerFigures Figures(Tally tally, Track track, SteadyState windows)
    {
        var spread = windows.Windows.Count == 0 ? 0 : windows.Windows.Max(w => Math.Abs(w.Ratio - windows.Ratio));
        return new CustomerFigures(track.Name, windows, spread, track.LatenciesWithin(windows.Windows.Select(w => (tally.Start + w.From, tally.Start + w.To))));
    }
}
