using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Throughput.Configuration;

namespace Throughput.Invoicing;

public sealed class InvoicingModule : FeatureModule
{
    public override IReadOnlyDictionary<Type, string> Events { get; } = new Dictionary<Type, string>
    {
        [typeof(InvoiceRegisterOpened)] = "invoice_register_opened",
        [typeof(InvoiceNumberAssigned)] = "invoice_number_assigned",
        [typeof(CreditNoteNumberAssigned)] = "credit_note_number_assigned",
        [typeof(InvoiceIssued)] = "invoice_issued",
        [typeof(CreditNoteIssued)] = "credit_note_issued",
    };

    public override IReadOnlyList<Type> Snapshots { get; } = [typeof(InvoiceRegister), typeof(Invoice)];

    /// <summary>The issuer runs with the Daemon role: background work beside the projections it reads.</summary>
    public override void AddServices(IServiceCollection services, IConfiguration configuration, HostRoles roles)
    {
        services.AddSingleton(InvoicingSettings.FromConfiguration(configuration));
        services.AddSingleton<InvoiceIssuing>();
        services.AddSingleton<AutomaticClose>();
        services.AddSingleton<MonthEndClose>();
        if (roles.Daemon) services.AddHostedService(sp => sp.GetRequiredService<AutomaticClose>());
    }

    /// <summary>
    /// The read models rewritten on every page of usage have their queried fields duplicated into indexed columns, as
    /// deployments do; issued documents, written once, keep expression indexes.
    /// </summary>
    public override void ConfigureStore(StoreOptions opts, ProjectionLayout layout)
    {
        // The register and the credit notes are read a month at a time in number order: (period, number) serves each page
        // from the index alone instead of sorting the whole month.
        opts.Schema.For<Invoice>().Index(i => i.TenantId).Index([i => i.Period, i => i.Number]);
        opts.Schema.For<BillingAccount>().Duplicate(a => a.UnissuedSince);
        opts.Schema.For<CreditNote>().Index([c => c.Period, c => c.Number]).Index(c => c.InvoiceId);
        opts.Schema.For<MonthClose>();
        foreach (var table in Accruals.Definitions(opts.DatabaseSchemaName)) opts.Storage.ExtendedSchemaObjects.Add(table);
        foreach (var table in UsageTotals.Definitions(opts.DatabaseSchemaName)) opts.Storage.ExtendedSchemaObjects.Add(table);
    }

    public override void AddReadModels(CompositeProjection readModels, StoreOptions opts, ProjectionLayout layout)
    {
        readModels.Add<BillingAccountProjection>();
        readModels.Add(new UsageTotals(), options =>
        {
            options.DeleteDataInTableOnTeardown(UsageTotals.TableName(opts.DatabaseSchemaName));
            options.DeleteDataInTableOnTeardown(UsageTotals.IssuedTableName(opts.DatabaseSchemaName));
        });
        foreach (var type in UsageTotals.EventTypes) readModels.IncludeType(type);
        readModels.Add<CreditNoteProjection>();
    }

    public override void MapEndpoints(WebApplication app)
    {
        app.MapInvoices();
        app.MapIssue();
        app.MapCreditNotes();
    }
}
