namespace Throughput.Configuration;

/// <summary>The composite projection that holds every async read model: its name and version.</summary>
public static class ReadModels
{
    public const string Name = "ReadModels";

    /// <summary>
    /// Marten gives each version tables and progress of its own (<c>mt_doc_billingaccount_4</c>, <c>BillingAccount:V4:All</c>),
    /// so a store upgraded to a version with other members, or other documents, builds them all from the log instead of
    /// starting at the position the old ones had reached. 4 since the minute and hour usage hold their counts as one value and
    /// the minute is keyed by record time.
    /// </summary>
    public const uint Version = 4;
}
