namespace Throughput.Configuration;

/// <summary>The composite projections that hold the async read models: their names and version.</summary>
public static class ReadModels
{
    public const string Name = "ReadModels";

    /// <summary>
    /// The composite of the usage series (minutes, hours, pool utilization), live; the rebuild command folds them in
    /// <see cref="Name"/>'s one pass. It carries <see cref="Version"/> too, so its members' tables and progress rows keep the
    /// names they had as members of <see cref="Name"/>.
    /// </summary>
    public const string SeriesName = "UsageSeries";

    /// <summary>
    /// Marten gives each version tables and progress of its own (<c>mt_doc_billingaccount_6</c>, <c>BillingAccount:V6:All</c>),
    /// so a store upgraded to a version with other members, or other documents, builds them all from the log instead of
    /// starting at the position the old ones had reached; tables of our own carry the version in their names too. 6 since
    /// minute usage is a table of columns (<c>usage_minutes_6</c>); 7 since usage by invoice is one too (<c>usage_totals_7</c>) and the
    /// billing account holds only spilled usage.
    /// </summary>
    public const uint Version = 7;
}
