namespace Throughput.Configuration;

/// <summary>The composite projection that holds every async read model: its name and version.</summary>
public static class ReadModels
{
    public const string Name = "ReadModels";

    /// <summary>
    /// Marten gives each version tables and progress of its own (<c>mt_doc_billingaccount_3</c>, <c>BillingAccount:V3:All</c>),
    /// so a store upgraded to a version with other members builds them all from the log instead of starting the new members
    /// at the position the old ones had reached. 3 since pool utilization and sell-through.
    /// </summary>
    public const uint Version = 3;
}
