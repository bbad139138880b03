using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using PdfSharp.Drawing;
using PdfSharp.Fonts;
using PdfSharp.Pdf;

namespace Throughput.Invoicing;

/// <summary>
/// An issued invoice as a PDF: bill-to, issue and due dates, period, lines, the credit notes against it and the balance.
/// Drawn from the invoice document alone (the issued event and its credit notes), so the same log gives the same bytes.
/// </summary>
public static partial class InvoiceDocument
{
    public const string ContentType = "application/pdf";

    /// <summary>Payment terms: due this long after issue.</summary>
    public static readonly TimeSpan PaymentTerms = TimeSpan.FromDays(30);

    const double Margin = 50, PageWidth = 595, PageHeight = 842; // A4 in points
    const string Family = "Segoe WP";

    static InvoiceDocument() => GlobalFontSettings.FontResolver ??= new PackagedFonts();

    public static bool Wanted(HttpContext http) =>
        string.Equals(http.Request.Query["format"], "pdf", StringComparison.OrdinalIgnoreCase)
        || http.Request.Headers.Accept.Any(a => a?.Contains(ContentType, StringComparison.OrdinalIgnoreCase) == true);

    public static DateTimeOffset DueAt(Invoice invoice) => invoice.IssuedAt + PaymentTerms;

    public static byte[] Render(Invoice invoice)
    {
        var document = new PdfDocument();
        document.Info.Title = $"Invoice {invoice.DocumentNumber}";
        document.Info.Author = "Throughput";
        document.Info.CreationDate = invoice.IssuedAt.UtcDateTime;
        document.Info.ModificationDate = invoice.IssuedAt.UtcDateTime;
        new Writer(document).Write(invoice);
        using var bytes = new MemoryStream();
        document.Save(bytes);
        return Deterministic(bytes.ToArray(), invoice.Id);
    }

    /// <summary>
    /// PDFsharp names each embedded font subset with six random letters and stamps random document ids (trailer and XMP).
    /// Each is replaced, at the same length so every offset in the file stays right, by one derived from the invoice id.
    /// </summary>
    static byte[] Deterministic(byte[] pdf, string invoiceId)
    {
        var seed = SHA256.HashData(Encoding.UTF8.GetBytes(invoiceId));
        var text = Encoding.Latin1.GetString(pdf);
        var prefixes = SubsetPrefix().Matches(text).Select(m => m.Groups[1].Value).Distinct().ToList();
        for (var i = 0; i < prefixes.Count; i++)
            text = text.Replace("/" + prefixes[i] + "+", "/" + new string((char)('A' + i % 26), 5) + (char)('A' + seed[i % seed.Length] % 26) + "+", StringComparison.Ordinal);
        var hex = Convert.ToHexString(seed)[..32];
        var uuid = new Guid(seed.AsSpan(0, 16)).ToString();
        text = TrailerId().Replace(text, $"/ID[<{hex}><{hex}>]");
        text = XmpUuid().Replace(text, "uuid:" + uuid);
        return Encoding.Latin1.GetBytes(text);
    }

    [GeneratedRegex(@"/(?:FontName|BaseFont)/([A-Z]{6})\+")]
    private static partial Regex SubsetPrefix();

    [GeneratedRegex(@"/ID\[<[0-9A-F]{32}><[0-9A-F]{32}>\]")]
    private static partial Regex TrailerId();

    [GeneratedRegex(@"uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")]
    private static partial Regex XmpUuid();

    /// <summary>Lays the invoice out top to bottom, starting a new page when the next row would not fit.</summary>
    sealed class Writer(PdfDocument document)
    {
        static readonly XFont Title = new(Family, 18, XFontStyleEx.Bold);
        static readonly XFont Bold = new(Family, 9, XFontStyleEx.Bold);
        static readonly XFont Body = new(Family, 9);
        static readonly XFont Small = new(Family, 7.5);
        const double Line = 12;
        // Columns: description, quantity, unit, unit price, amount (right edges for the numbers).
        const double Quantity = 390, Unit = 395, UnitPrice = 480, Amount = PageWidth - Margin;
        const double DescriptionWidth = Quantity - Margin - 60;

        XGraphics? _page;
        double _y;

        XGraphics Page => _page ?? NewPage();

        public void Write(Invoice invoice)
        {
            var culture = CultureInfo.InvariantCulture;
            Text($"Invoice {invoice.DocumentNumber}", Title, Margin);
            _y += 10;
            Row(("Bill to", Bold, Margin), ("Invoice date", Bold, 300), (Date(invoice.IssuedAt), Body, 400));
            Row((invoice.BillTo ?? invoice.TenantId, Body, Margin), ("Due date", Bold, 300), (Date(DueAt(invoice)), Body, 400));
            Row(($"Account {invoice.TenantId}", Small, Margin), ("Service period", Bold, 300), ($"{Date(invoice.PeriodStart)} – {Date(invoice.PeriodEnd.AddSeconds(-1))}", Body, 400));
            Row(("", Body, Margin), ("Currency", Bold, 300), (invoice.Currency, Body, 400));
            _y += Line;

            Row(("#  Description", Bold, Margin));
            Right("Quantity", Bold, Quantity, _y - Line);
            Page.DrawString("Unit", Bold, XBrushes.Black, Unit, _y - Line + Body.Height);
            Right("Unit price", Bold, UnitPrice, _y - Line);
            Right("Amount", Bold, Amount, _y - Line);
            Rule();
            foreach (var line in invoice.Lines)
            {
                var wrapped = Wrap($"{line.Line}  {line.Description}", Body, DescriptionWidth);
                Reserve(wrapped.Count * Line + 2);
                var top = _y;
                foreach (var part in wrapped) Text(part, Body, Margin);
                Right(line.Quantity.ToString("0.######", culture), Body, Quantity, top);
                Page.DrawString(line.Unit, Body, XBrushes.Black, Unit, top + Body.Height);
                Right(line.UnitPrice.ToString("0.######", culture), Body, UnitPrice, top);
                Right(Money.Text(line.Amount, invoice.Currency), Body, Amount, top);
                _y += 2;
            }
            Rule();
            Total("Total", invoice.Total, invoice.Currency, Bold);
            foreach (var credit in invoice.CreditNotes)
                Total($"Credit note {credit.DocumentNumber}, {Date(credit.IssuedAt)}", -credit.Total, invoice.Currency, Body);
            Total("Balance due", invoice.Balance, invoice.Currency, Bold);
            _y += Line;
            Text($"Payment due within {PaymentTerms.TotalDays:0} days of the invoice date. Amounts in {invoice.Currency}; each line is rounded to the currency's minor unit.", Small, Margin);
            Text($"Issued {Date(invoice.IssuedAt)} {invoice.IssuedAt.UtcDateTime:HH:mm:ss} UTC. Corrections are made by credit note; this invoice never changes.", Small, Margin);
        }

        void Total(string label, decimal amount, string currency, XFont font)
        {
            Reserve(Line);
            Right(label, font, UnitPrice, _y);
            Right(Money.Text(amount, currency), font, Amount, _y);
            _y += Line;
        }

        void Row(params (string Text, XFont Font, double X)[] cells)
        {
            Reserve(Line);
            foreach (var (text, font, x) in cells) Page.DrawString(text, font, XBrushes.Black, x, _y + font.Height);
            _y += Line;
        }

        void Text(string text, XFont font, double x)
        {
            Reserve(font.Height + 2);
            Page.DrawString(text, font, XBrushes.Black, x, _y + font.Height);
            _y += Math.Max(Line, font.Height + 2);
        }

        void Right(string text, XFont font, double right, double top) =>
            Page.DrawString(text, font, XBrushes.Black, right - Page.MeasureString(text, font).Width, top + font.Height);

        void Rule()
        {
            Page.DrawLine(XPens.Gray, Margin, _y + 3, PageWidth - Margin, _y + 3);
            _y += 8;
        }

        void Reserve(double height)
        {
            if (_page is null || _y + height > PageHeight - Margin) NewPage();
        }

        XGraphics NewPage()
        {
            _page?.Dispose();
            _page = XGraphics.FromPdfPage(document.AddPage());
            _y = Margin;
            return _page;
        }

        List<string> Wrap(string text, XFont font, double width)
        {
            List<string> lines = [];
            var current = new StringBuilder();
            foreach (var word in text.Split(' '))
            {
                var candidate = current.Length == 0 ? word : current + " " + word;
                if (current.Length > 0 && Page.MeasureString(candidate, font).Width > width)
                {
                    lines.Add(current.ToString());
                    current.Clear().Append("    ").Append(word);
                }
                else current.Clear().Append(candidate);
            }
            lines.Add(current.ToString());
            return lines;
        }

        static string Date(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
    }

    /// <summary>The fonts PDFsharp ships (PdfSharp.WPFonts): nothing depends on the machine's fonts.</summary>
    sealed class PackagedFonts : IFontResolver
    {
        public FontResolverInfo ResolveTypeface(string familyName, bool bold, bool italic) => new(bold ? "SegoeWP-Bold" : "SegoeWP");

        public byte[] GetFont(string faceName) => faceName == "SegoeWP-Bold" ? PdfSharp.WPFonts.FontDataHelper.SegoeWPBold : PdfSharp.WPFonts.FontDataHelper.SegoeWP;
    }
}
