// Finance: last month's revenue by model (a chart per currency) and its invoice register, each invoice's page, CSV
// downloads, sell-through and utilization, a credit note issued from the invoice page; the tenant an invoice bills can
// open it, another tenant cannot. Last month was lived through before the tests (lastMonth.mjs) and
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
let expected; // { lines: [{ key, model, cents }], total (cents), byModel: { model: cents }, euro (cents) }

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
  const catalog = (await call(platform, financeKey, 'GET', '/v1/models')).body;
  const models = Object.fromEntries(catalog.map((m) => [m.name, m.prices.USD]));
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
  // Fabrikam Europe's one deployment, billed in EUR at the model's EUR price.
  const eu = lastMonth.euro.deployment;
  const euroPrice = catalog.find((m) => m.name === eu.model).prices.EUR.perPtuHour;
  const euro = round(eu.ptu * ((end - Math.floor(Date.parse(eu.createdAt) / 1000) * 1000) / 1000) * euroPrice / 3600);
  return { lines, total: lines.reduce((a, l) => a + l.cents, 0), byModel, euro };
}

before(async () => {
  chromium = await launch();
  expected = await expectedInvoice();
  // The host issues last month's invoice by itself (the tests give it a grace period of a second); revenue follows on its daemon.
  issued = await until(`${lastMonth.month}'s invoice for ${lastMonth.tenant.tenantId} issued`, async () =>
    (await call(platform, financeKey, 'GET', `/v1/finance/invoices?month=${lastMonth.month}`)).body.find((i) => i.tenantId === lastMonth.tenant.tenantId));
  await until(`${lastMonth.month}'s revenue projected in USD and EUR`, async () =>
    (await call(platform, financeKey, 'GET', `/v1/finance/revenue?from=${lastMonth.month}&to=${lastMonth.month}`)).body.length === Object.keys(expected.byModel).length + 1);
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

test('finance sees last month\'s revenue by model in one chart per currency, its invoices in the register, tables that fit 1,400 px, and follows the link to the invoice', async () => {
  const page = await newPage(chromium.browser, platform.url, { width: 1400, height: 900 });
  await signIn(page, financeKey);
  await page.waitForURL(/finance\.html/);
  await page.getByRole('heading', { name: 'Revenue by month and model' }).waitFor();
  assert.equal(await page.getByLabel('To month').inputValue(), month);
  assert.equal(await page.getByLabel('Month', { exact: true }).inputValue(), lastMonth.month, 'the register opens on the month just closed');

  // Revenue: one chart per currency, each bar a model's sum of lines in last month; euros never share dollars' axis.
  await page.waitForFunction((m) => ['USD', 'EUR'].every((c) => window.Chart?.getChart(`c-revenue-${c}`)?.data.labels.includes(m)), lastMonth.month);
  const charted = await page.evaluate((m) => Object.fromEntries(['USD', 'EUR'].map((currency) => {
    const chart = window.Chart.getChart(`c-revenue-${currency}`);
    const { labels, datasets } = chart.data;
    return [currency, { axis: chart.options.scales.y.title.text, bars: Object.fromEntries(datasets.filter((d) => !d.label.startsWith('Accrued'))
      .map((d) => [d.label, Math.round(d.data[labels.indexOf(m)] * 100)])) }];
  })), lastMonth.month);
  assert.deepEqual(charted, {
    USD: { axis: 'USD', bars: expected.byModel },
    EUR: { axis: 'EUR', bars: { [lastMonth.euro.deployment.model]: expected.euro } },
  });
  assert.ok(Object.values(charted.USD.bars).every((c) => c > 0) && expected.euro > 0);
  assert.deepEqual(await page.locator('#revenue-charts canvas').evaluateAll((cs) => cs.map((c) => c.id)), ['c-revenue-EUR', 'c-revenue-USD'], 'one chart per currency');
  await page.getByText('Show as table').click();
  const revenue = (await tableRows(page.locator('#revenue table'))).filter((r) => r.Month === lastMonth.month);
  assert.deepEqual(Object.fromEntries(revenue.filter((r) => r.Currency === 'USD').map((r) => [r.Model, cents(r.Net)])), expected.byModel);
  assert.deepEqual(revenue.filter((r) => r.Currency === 'EUR').map((r) => [r.Model, cents(r.Net)]), [[lastMonth.euro.deployment.model, expected.euro]]);

  // Accrued revenue: this month's drafts, summed per currency, drawn on each currency's chart and listed with their time.
  const accrued = Object.fromEntries((await call(platform, financeKey, 'GET', `/v1/finance/accrued?month=${month}`)).body.map((a) => [a.currency, a.accrued]));
  const shownAccrued = await page.evaluate((m) => Object.fromEntries(['USD', 'EUR'].map((currency) => {
    const { labels, datasets } = window.Chart.getChart(`c-revenue-${currency}`).data;
    return [currency, datasets.find((d) => d.label === 'Accrued, not yet invoiced').data[labels.indexOf(m)]];
  })), month);
  assert.ok(accrued.USD > 0 && accrued.EUR > 0, JSON.stringify(accrued));
  for (const currency of ['USD', 'EUR']) assert.ok(Math.abs(shownAccrued[currency] - accrued[currency]) < 0.05 + accrued[currency] * 0.001, `${currency}: ${shownAccrued[currency]} charted, ${accrued[currency]} accrued`);
  const listedAccrued = (await tableRows(page.locator('#accrued table'))).filter((r) => r.Month === month);
  assert.deepEqual(listedAccrued.map((r) => r.Currency), ['EUR', 'USD']);
  assert.ok(listedAccrued.every((r) => /^\d{2}\/\d{2}\/\d{4}, \d{2}:\d{2}:\d{2}$/.test(r['As of'])));

  // The register: the invoice's row, with its number, tenant (by name), line count, total and a readable time.
  const row = page.locator('#register tbody tr').filter({ hasText: lastMonth.tenant.tenantId });
  await row.waitFor();
  const [listed] = (await tableRows(page.locator('#register table'))).filter((r) => r.Tenant === `Contoso Docs (${lastMonth.tenant.tenantId})`);
  assert.ok(listed, 'the tenant by its name, its id beside it');
  assert.match(listed.Issued, /^\d{2}\/\d{2}\/\d{4}, \d{2}:\d{2}:\d{2}$/, 'a readable time, not raw ISO');
  assert.equal(listed.Currency, 'USD');
  const link = row.getByRole('link');
  const number = await link.textContent();
  assert.equal(number, issued.documentNumber);
  assert.equal(listed.Invoice, number);
  assert.equal(listed.Lines, String(expected.lines.length));
  assert.equal(cents(listed.Total), expected.total);
  assert.equal(listed['Issued by'], 'automatic');
  const euroRow = (await tableRows(page.locator('#register table'))).find((r) => r.Tenant === `Fabrikam Europe (${lastMonth.euro.tenant.tenantId})`);
  assert.deepEqual([euroRow?.Currency, cents(euroRow?.Total ?? '0')], ['EUR', expected.euro]);

  // Sell-through and utilization of this month: the pool last month's deployments still hold, sold and idle.
  const region = lastMonth.deployments[0].region;
  await page.locator('#sell-through tbody tr').filter({ hasText: region }).first().waitFor();
  const sold = (await tableRows(page.locator('#sell-through table'))).find((r) => r.Region === region && r.Model === 'gpt-4o-mini');
  assert.ok(Number(sold['Sold (PTU-h)'].replace(/,/g, '')) > 0 && /%$/.test(sold['Sell-through']), JSON.stringify(sold));
  await page.locator('#utilization tbody tr').filter({ hasText: region }).first().waitFor();
  assert.ok((await tableRows(page.locator('#utilization table'))).some((r) => r.Region === region && r.Utilization === 'idle'));

  // Every projected figure says when it was read, and the page says projections may lag the log by seconds.
  assert.match(await page.locator('#lag').textContent(), /lag it by a few seconds/);
  for (const id of ['revenue-asof', 'register-asof', 'sell-through-asof', 'utilization-asof'])
    assert.match(await page.locator(`#${id}`).textContent(), /^As of \d{2}\/\d{2}\/\d{4}, \d{2}:\d{2}:\d{2}$/, id);

  // At 1,400 px every table fits its card: nothing scrolls sideways or is cut off.
  const overflowing = await page.locator('.table-wrap').evaluateAll((ws) => ws.filter((w) => w.scrollWidth > w.clientWidth + 1).map((w) => w.getAttribute('aria-label')));
  assert.deepEqual(overflowing, []);
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
  assert.match(await page.locator('#invoice-meta').textContent(), new RegExp(`Contoso Docs \\(${lastMonth.tenant.tenantId}\\) · billing month ${lastMonth.month} · .* by automatic`));
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

test('accrued revenue is every tenant\'s draft of the open month summed per currency', async () => {
  // Every tenant's draft now, through the API, against the accrued figure read right after: they agree to the cent but
  // for the seconds between the reads, and once the read models have caught up.
  const tenants = (await call(platform, platform.operatorKey, 'GET', '/v1/operator/tenants?limit=1000')).body;
  await until('accrued revenue equal to the sum of the drafts', async () => {
    const drafts = {};
    for (const t of tenants) {
      const draft = (await call(platform, financeKey, 'GET', `/v1/finance/drafts/${t.id}?month=${month}`)).body;
      drafts[draft.currency] = (drafts[draft.currency] ?? 0) + Math.round(draft.total * 100);
    }
    const accrued = Object.fromEntries((await call(platform, financeKey, 'GET', `/v1/finance/accrued?month=${month}`)).body
      .map((a) => [a.currency, Math.round(a.accrued * 100)]));
    const expectedCurrencies = Object.keys(drafts).filter((c) => drafts[c] > 0).sort();
    return expectedCurrencies.length > 0 && JSON.stringify(Object.keys(accrued).sort()) === JSON.stringify(expectedCurrencies)
      && expectedCurrencies.every((c) => Math.abs(accrued[c] - drafts[c]) <= 5 + drafts[c] * 0.001);
  });
  const answer = await call(platform, financeKey, 'GET', '/v1/finance/accrued?month=not-a-month', undefined, { expect: [400] });
  assert.equal(answer.status, 400);
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

test('finance issues a credit note from the invoice page, once, and one larger than the balance is refused', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, financeKey);
  await page.waitForURL(/finance\.html/);
  await page.goto(`/invoice.html?id=${encodeURIComponent(issued.id)}`);
  await page.getByRole('heading', { name: 'Issue a credit note' }).waitFor();
  const before = await invoiceShown(page);

  await page.getByLabel('Amount').fill('999999');
  await page.getByLabel('Reason').fill('Too much');
  await page.getByRole('button', { name: 'Issue credit note' }).click();
  await page.locator('#credit-error').filter({ hasText: /balance/ }).waitFor();
  assert.equal((await call(platform, financeKey, 'GET', `/v1/finance/invoices/${issued.id}`)).body.creditNotes.length, 0, 'nothing credited');

  await page.getByLabel('Amount').fill('1.25');
  await page.getByLabel('Reason').fill('SLA breach on the 12th');
  const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/credit-notes'));
  await page.getByRole('button', { name: 'Issue credit note' }).click();
  assert.match((await sent).headers()['idempotency-key'] ?? '', /^[0-9a-f]{32}$/);
  await page.locator('#credit-status').filter({ hasText: /^Credit note CN-\d{8} issued for 1\.25 USD\.$/ }).waitFor();
  await page.locator('#credit-notes tbody tr').filter({ hasText: 'SLA breach on the 12th' }).waitFor();
  assert.equal(cents(await page.locator('#invoice-balance').textContent()), before.total - 125);
  assert.equal(cents(await page.locator('#invoice-credited').textContent()), 125);
  await screenshot(page, '13-finance-credit-note');

  const invoice = (await call(platform, financeKey, 'GET', `/v1/finance/invoices/${issued.id}`)).body;
  assert.deepEqual(invoice.creditNotes.map((c) => [c.reason, Math.round(c.total * 100)]), [['SLA breach on the 12th', 125]], 'credited once');
  assert.equal(Math.round(invoice.balance * 100), expected.total - 125);

  // The register shows it too.
  await page.goto('/finance.html');
  const row = page.locator('#register tbody tr').filter({ hasText: lastMonth.tenant.tenantId });
  await row.waitFor();
  const [listed] = (await tableRows(page.locator('#register table'))).filter((r) => r.Tenant.includes(lastMonth.tenant.tenantId));
  assert.deepEqual([cents(listed.Credited), cents(listed.Balance)], [125, expected.total - 125]);
  assert.deepEqual(page.errors.filter((e) => !/status of 409/.test(e)), [], 'nothing but the refused credit\'s 409');
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
