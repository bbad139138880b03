using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Throughput.Finance;
using Throughput.Configuration;

namespace Throughput.Invoicing;

public static class InvoicingModule
{
    /// <summary>The issuer runs with the Daemon role: background work beside the projections it reads.</summary>
    public static IServiceCollection AddThroughputInvoicing(this IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        services.AddSingleton(InvoicingSettings.FromConfiguration(configuration));
        services.AddSingleton<InvoiceIssuing>();
        services.AddSingleton<InvoiceIssuer>();
        services.AddSingleton<MonthEndClose>();
        if (roles.Daemon) services.AddHostedService(sp => sp.GetRequiredService<InvoiceIssuer>());
        return services;
    }

    /// <summary>
    /// Indexes of invoicing's documents (its snapshots and read models are registered with the others'). The read models
    /// rewritten on every page of usage have their queried fields duplicated into indexed columns, as deployments do
    /// (see <see cref="Hosting.EventStore"/>); issued documents, written once, keep expression indexes.
    /// </summary>
    public static void AddInvoicingSchema(this StoreOptions opts)
    {
        // The register and the credit notes are read a month at a time in number order: (period, number) serves each page
        // from the index alone instead of sorting the whole month.
        opts.Schema.For<Invoice>().Index(i => i.TenantId).Index([i => i.Period, i => i.Number]);
        opts.Schema.For<BillingAccount>().Duplicate(a => a.UnissuedSince);
        opts.Schema.For<CreditNote>().Index([c => c.Period, c => c.Number]).Index(c => c.InvoiceId);
        opts.Schema.For<RevenueRow>().Duplicate(r => r.Period);
        opts.Schema.For<PoolMonth>().Duplicate(m => m.Period);
        opts.Schema.For<PoolUtilization>().Duplicate(m => m.Period);
    }

    /// <summary>Invoicing's and finance's async read models, members of the host's one composite projection.</summary>
    public static void AddInvoicingReadModels(this CompositeProjection readModels)
    {
        readModels.Add<BillingAccountProjection>();
        readModels.Add(new PoolUtilizationProjection(), options =>
        {
            options.DeleteViewTypeOnTeardown<UsageHour>();
            options.DeleteViewTypeOnTeardown<PooledDeployment>();
            options.DeleteViewTypeOnTeardown<PoolUtilization>();
        });
        foreach (var type in PoolUtilizationProjection.EventTypes) readModels.IncludeType(type);
        readModels.Add<CreditNoteProjection>();
        readModels.Add<RevenueProjection>();
        readModels.Add<PoolMonthProjection>();
    }

    public static WebApplication MapInvoicing(this WebApplication app)
    {
        app.MapInvoices();
        app.MapIssue();
        app.MapCreditNotes();
        app.MapFinance();
        return app;
    }
}
