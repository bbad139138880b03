namespace Throughput.Configuration;

/// <summary>The composite projection that holds every async read model: its name and version.</summary>
public static class ReadModels
{
    public const string Name = "ReadModels";

    /// <summary>
    /// Marten gives each version tables and progress of its own (<c>mt_doc_billingaccount_5</c>, <c>BillingAccount:V5:All</c>),
    /// so a store upgraded to a version with other members, or other documents, builds them all from the log instead of
    /// starting at the position the old ones had reached. 5 since usage for an issued month goes on the earliest later
    /// invoice still open, whenever it was metered (the benchmarks' DraftObserver names the billing accounts' table too).
    /// </summary>
    public const uint Version = 5;
}
