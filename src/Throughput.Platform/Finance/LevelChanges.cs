using Throughput.Invoicing;

namespace Throughput.Finance;

/// <summary>
/// The changes of a level (PTUs of capacity, PTUs sold, deployments holding PTUs) within one month, kept as two sums so
/// that the level's integral over the month needs neither the changes themselves nor a document that grows with them:
/// a change of δ at <c>s</c> seconds into the month adds δ·(t − s) to the integral up to <c>t</c>, so the integral is
/// <c>L₀·t + t·Σδ − Σδ·s</c>, with L₀ the level at the start of the month (the sum of every earlier month's changes).
/// Times are whole seconds into the month, as invoices count them.
/// </summary>
public readonly record struct LevelChanges(decimal Sum, decimal SecondsWeighted)
{
    public LevelChanges Add(decimal change, BillingMonth month, DateTimeOffset at) =>
        new(Sum + change, SecondsWeighted + change * SecondsInto(month, at));

    public static LevelChanges operator +(LevelChanges a, LevelChanges b) => new(a.Sum + b.Sum, a.SecondsWeighted + b.SecondsWeighted);

    /// <summary>
    /// The level's integral (level × seconds) from the start of the month to <paramref name="to"/>, clamped to the month.
    /// Every change is taken to be at or before <paramref name="to"/>: true of a whole month and of a month to now.
    /// </summary>
    public decimal Integral(decimal levelAtStart, BillingMonth month, DateTimeOffset to)
    {
        var t = SecondsInto(month, to < month.End ? to : month.End);
        return t <= 0 ? 0 : levelAtStart * t + t * Sum - SecondsWeighted;
    }

    /// <summary>
    /// The level's integral over <paramref name="month"/> up to <paramref name="to"/>, from the changes of every month up to
    /// and including it (the earlier months give the level at its start).
    /// </summary>
    public static decimal Integral(IEnumerable<(int Period, LevelChanges Changes)> months, BillingMonth month, DateTimeOffset to)
    {
        decimal atStart = 0;
        LevelChanges within = default;
        foreach (var (period, changes) in months)
        {
            if (period < month.Index) atStart += changes.Sum;
            else if (period == month.Index) within += changes;
        }
        return within.Integral(atStart, month, to);
    }

    static decimal SecondsInto(BillingMonth month, DateTimeOffset at) => Math.Max(0, (long)(at - month.Start).TotalSeconds);
}
