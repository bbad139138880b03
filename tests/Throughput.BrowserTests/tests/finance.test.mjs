// Finance: last month's revenue by model and its invoice register, each invoice's page, CSV downloads; the tenant an
// invoice bills can open it, another tenant cannot. Last month was lived through before the tests (lastMonth.mjs) and
// the host issued its invoice by itself; what it should bill is worked out here from what was bought and metered.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { lastMonthFromEnvironment } from '../lastMonth.mjs';
import { call, newStaffKey, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
const lastMonth = lastMonthFromEnvironment();
const month = new Date().toISOString().slice(0, 7);
const financeKey = await newStaffKey(platform, 'Finance');
let chromium;
let issued; // the register's row for Contoso's invoice
let expected; // { lines: [{ key, model, cents }], total (cents), byModel: { model: cents } }

/** Polls until `probe` returns something truthy. */
async function until(what, probe, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** 1,234.56 USD → 123456 */
const cents = (shown) => Math.round(Number(shown.replace(/[^\d.-]/g, '')) * 100);

/**
 * What last month should bill, from first principles: each deployment's PTUs × whole seconds from its purchase to the
 * month's end × the catalog's price per PTU-hour, and the spilled tokens × the price per 1M tokens of their type;
 * every line rounded half away from zero to the cent.
 */
async function expectedInvoice() {
  const models = Object.fromEntries((await call(platform, financeKey, 'GET', '/v1/models')).body.map((m) => [m.name, m.prices.USD]));
  const [year, mm] = lastMonth.month.split('-').map(Number);
  const end = Date.UTC(year, mm, 1);
  const round = (amount) => Math.round(amount * 100 + 1e-9);
  const lines = lastMonth.deployments.map((d) => {
    const seconds = (end - Math.floor(Date.parse(d.createdAt) / 1000) * 1000) / 1000;
    return { key: `Provisioned ${d.id}`, model: d.model, cents: round(d.ptu * seconds * models[d.model].perPtuHour / 3600) };
  });
  const review = lastMonth.deployments.find((d) => d.id === lastMonth.spilled.deploymentId);
  const per = { Input: 'spilloverInputPerMillion', Cached: 'spilloverCachedPerMillion', Output: 'spilloverOutputPerMillion' };
  for (const [type, tokens] of Object.entries(lastMonth.spilled.tokens))
    lines.push({ key: `Spillover ${review.id} ${type}`, model: review.model, cents: round(tokens * models[review.model][per[type]] / 1e6) });
  const byModel = {};
  for (const l of lines) byModel[l.model] = (byModel[l.model] ?? 0) + l.cents;
  return { lines, total: lines.reduce((a, l) => a + l.cents, 0), byModel };
}

before(async () => {
  chromium = await launch();
  expected = await expectedInvoice();
  // The host issues last month's invoice by itself (the tests give it a grace period of a second); revenue follows on its daemon.
  issued = await until(`${lastMonth.month}'s invoice for ${lastMonth.tenant.tenantId} issued`, async () =>
    (await call(platform, financeKey, 'GET', `/v1/finance/invoices?month=${lastMonth.month}`)).body.find((i) => i.tenantId === lastMonth.tenant.tenantId));
  await until(`${lastMonth.month}'s revenue projected`, async () =>
    (await call(platform, financeKey, 'GET', `/v1/finance/revenue?from=${lastMonth.month}&to=${lastMonth.month}`)).body.length === Object.keys(expected.byModel).length);
});
after(async () => { await chromium?.close(); });

test('the host issued last month\'s invoice by itself, billing what was bought and metered', async () => {
  const invoice = (await call(platform, financeKey, 'GET', `/v1/finance/invoices/${issued.id}`)).body;
  assert.equal(invoice.issuedBy, 'automatic');
  assert.match(invoice.documentNumber, /^INV-\d{8}$/);
  const keyOf = (l) => (l.kind === 'Provisioned' ? `Provisioned ${l.deploymentId}` : `${l.kind} ${l.deploymentId} ${l.tokenType}`);
  assert.deepEqual(
    Object.fromEntries(invoice.lines.map((l) => [keyOf(l), Math.round(l.amount * 100)])),
    Object.fromEntries(expected.lines.map((l) => [l.key, l.cents])));
  assert.equal(Math.round(invoice.total * 100), expected.total);
});

test('finance sees last month\'s revenue by model and its invoice in the register, and follows the link to the invoice', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, financeKey);
  await page.waitForURL(/finance\.html/);
  await page.getByRole('heading', { name: 'Revenue by month and model' }).waitFor();
  assert.equal(await page.getByLabel('To month').inputValue(), month);
  assert.equal(await page.getByLabel('Month', { exact: true }).inputValue(), lastMonth.month, 'the register opens on the month just closed');

  // Revenue: one bar per model in last month, each the sum of that model's lines.
  await page.waitForFunction((m) => window.Chart?.getChart('c-revenue')?.data.labels.includes(m), lastMonth.month);
  const charted = await page.evaluate((m) => {
    const { labels, datasets } = window.Chart.getChart('c-revenue').data;
    return Object.fromEntries(datasets.map((d) => [d.label, Math.round(d.data[labels.indexOf(m)] * 100)]));
  }, lastMonth.month);
  assert.deepEqual(charted, Object.fromEntries(Object.entries(expected.byModel).map(([model, c]) => [`${model} (USD)`, c])));
  assert.ok(Object.values(charted).every((c) => c > 0));
  await page.getByText('Show as table').click();
  const revenue = (await tableRows(page.locator('#revenue table'))).filter((r) => r.Month === lastMonth.month);
  assert.deepEqual(Object.fromEntries(revenue.map((r) => [r.Model, cents(r.Net)])), expected.byModel);

  // The register: the invoice's row, with its number, tenant, line count and total.
  const row = page.locator('#register tbody tr').filter({ hasText: lastMonth.tenant.tenantId });
  await row.waitFor();
  const [listed] = (await tableRows(page.locator('#register table'))).filter((r) => r['Tenant Id'] === lastMonth.tenant.tenantId);
  const link = row.getByRole('link');
  const number = await link.textContent();
  assert.equal(number, issued.documentNumber);
  assert.equal(listed.Invoice, number);
  assert.equal(listed.Lines, String(expected.lines.length));
  assert.equal(cents(listed.Total), expected.total);
  assert.equal(listed['Issued By'], 'automatic');
  await screenshot(page, '06-finance');

  await link.click();
  await page.waitForURL(/invoice\.html\?id=/);
  assert.equal(new URL(page.url()).searchParams.get('id'), issued.id);
  await page.getByRole('heading', { name: `Invoice ${number}` }).waitFor();
  const shown = await invoiceShown(page);
  assert.equal(shown.lines.length, expected.lines.length);
  assert.deepEqual(shown.lines.map((l) => l.amount).sort((a, b) => a - b), expected.lines.map((l) => l.cents).sort((a, b) => a - b));
  assert.equal(shown.total, shown.lines.reduce((a, l) => a + l.amount, 0), 'the total is the sum of the lines shown');
  assert.equal(shown.total, expected.total);
  assert.deepEqual(shown.lines.map((l) => l.line), shown.lines.map((_, i) => String(i + 1)), 'lines are numbered 1…n');
  assert.ok(shown.lines.some((l) => /docs-review/.test(l.description) && /spilled output tokens/i.test(l.description)));
  assert.match(await page.locator('#invoice-meta').textContent(), new RegExp(`${lastMonth.tenant.tenantId} · billing month ${lastMonth.month} · .* by automatic`));
  await screenshot(page, '09-invoice');

  // The lines as CSV: one row per line, the same amounts.
  const [file] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download lines CSV' }).click()]);
  assert.equal(file.suggestedFilename(), `${number}.csv`);
  const rows = (await readFile(await file.path(), 'utf8')).replace(/^\uFEFF/, '').split('\r\n').filter(Boolean);
  assert.equal(rows.length, 1 + expected.lines.length);
  assert.equal(rows.slice(1).reduce((a, r) => a + cents(r.split(',').at(-1)), 0), expected.total);

  // The invoice document: a PDF named after the invoice, the same bytes as the API serves.
  const [pdf] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download PDF' }).click()]);
  assert.equal(pdf.suggestedFilename(), `${number}.pdf`);
  const bytes = await readFile(await pdf.path());
  assert.equal(bytes.subarray(0, 5).toString('latin1'), '%PDF-');
  const served = await fetch(`${platform.url}/v1/finance/invoices/${issued.id}?format=pdf`, { headers: { Authorization: `Bearer ${financeKey}` } });
  assert.equal(served.headers.get('content-type'), 'application/pdf');
  assert.ok(Buffer.from(await served.arrayBuffer()).equals(bytes), 'the download is the document the API serves');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the tenant an invoice bills opens it from its page; another tenant cannot open it', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, lastMonth.tenant.key);
  await page.waitForURL(/customer\.html/);
  await page.locator('#invoices').getByRole('link', { name: issued.documentNumber }).click();
  await page.waitForURL(/invoice\.html\?id=/);
  await page.getByRole('heading', { name: `Invoice ${issued.documentNumber}` }).waitFor();
  const shown = await invoiceShown(page);
  assert.equal(shown.total, expected.total);
  assert.equal(shown.lines.length, expected.lines.length);
  assert.doesNotMatch(await page.locator('#invoice-meta').textContent(), / by /, 'who issued it is finance\'s business, not the customer\'s');
  assert.equal(await page.getByRole('link', { name: '← Back' }).getAttribute('href'), 'customer.html');
  await page.getByRole('link', { name: '← Back' }).click();
  await page.locator('#invoices').getByRole('link', { name: issued.documentNumber }).waitFor();
  await page.locator('#draft-total').waitFor();
  await screenshot(page, '10-customer-invoices');
  assert.deepEqual(page.errors, []);
  await page.context().close();

  const stranger = await newTenant(platform, 'Fabrikam Digest');
  const other = await newPage(chromium.browser, platform.url);
  await signIn(other, stranger.key);
  await other.waitForURL(/customer\.html/);
  await other.goto(`/invoice.html?id=${encodeURIComponent(issued.id)}`);
  await other.getByText(`No invoice '${issued.id}'.`).waitFor();
  assert.equal(await other.locator('#invoice-total').count(), 0, 'no total of another tenant\'s invoice');
  assert.equal(await other.getByText(issued.documentNumber).count(), 0);
  assert.equal(await other.getByRole('button', { name: 'Download lines CSV' }).isDisabled(), true);
  await other.context().close();
});

test('finance downloads the revenue and register CSVs', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, financeKey);
  await page.waitForURL(/finance\.html/);
  await page.locator('#register tbody tr').first().waitFor();
  const [file] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download revenue CSV' }).click()]);
  assert.equal(file.suggestedFilename(), `revenue-${await page.getByLabel('From month').inputValue()}-${month}.csv`);
  const revenue = (await readFile(await file.path(), 'utf8')).split('\r\n');
  const header = revenue[0].replace(/^\uFEFF/, '').split(',');
  assert.deepEqual(header.slice(0, 3), ['month', 'currency', 'model']);
  const net = header.indexOf('net');
  const rows = revenue.slice(1).filter((r) => r.startsWith(`${lastMonth.month},`)).map((r) => r.split(','));
  assert.deepEqual(Object.fromEntries(rows.map((r) => [r[2], cents(r[net])])), expected.byModel);

  const [register] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download register CSV' }).click()]);
  assert.equal(register.suggestedFilename(), `invoices-${lastMonth.month}.csv`);
  const listed = (await readFile(await register.path(), 'utf8')).split('\r\n');
  assert.ok(listed.some((r) => r.startsWith(`${issued.documentNumber},${issued.id},${lastMonth.tenant.tenantId},${lastMonth.month},USD,${(expected.total / 100).toFixed(2)},`)), listed.join('\n'));
  await page.context().close();
});

/** The invoice page as a reader sees it: each line's number, description and amount (in cents), and the total. */
async function invoiceShown(page) {
  await page.locator('#invoice-total').waitFor();
  return {
    lines: (await tableRows(page.locator('#lines table'))).map((r) => ({ line: r.Line, description: r.Description, amount: cents(r.Amount) })),
    total: cents(await page.locator('#invoice-total').textContent()),
  };
}

/** A table's body rows as objects keyed by the column headings. */
const tableRows = (table) => table.evaluate((t) => {
  const headings = [...t.querySelectorAll('thead th')].map((th) => th.textContent);
  return [...t.querySelectorAll('tbody tr')].map((tr) => Object.fromEntries([...tr.children].map((td, i) => [headings[i], td.textContent])));
});
