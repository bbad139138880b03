// Finance: revenue by month and model, the invoice register, CSV downloads. The finance API is built in parallel;
// until it answers, the page shows its empty state and the download test is skipped, saying so.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { call, newStaffKey, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
const month = new Date().toISOString().slice(0, 7);
const now = new Date();
const lastMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
const financeKey = await newStaffKey(platform, 'Finance');
const probe = await call(platform, financeKey, 'GET', `/v1/finance/revenue?from=${month}&to=${month}`, undefined, { expect: [404] });
const landed = probe.status !== 404;
let chromium;

before(async () => { chromium = await launch(); });
after(async () => { await chromium?.close(); });

test('finance signs in to the revenue and invoice page', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, financeKey);
  await page.waitForURL(/finance\.html/);
  await page.getByRole('heading', { name: 'Revenue by month and model' }).waitFor();
  assert.equal(await page.getByLabel('To month').inputValue(), month);
  assert.equal(await page.getByLabel('Month', { exact: true }).inputValue(), lastMonth);
  if (landed) {
    await page.locator('#revenue > *').first().waitFor({ state: 'attached' });
    assert.equal(await page.locator('#unavailable').isVisible(), false);
  } else {
    await page.getByText('The finance API is not available on this platform yet').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Download revenue CSV' }).isDisabled(), true, 'nothing to download yet');
  }
  await screenshot(page, '06-finance');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('finance downloads the revenue and register CSVs', { skip: landed ? false : 'GET /v1/finance/revenue answers 404: the finance API has not landed' }, async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, financeKey);
  await page.waitForURL(/finance\.html/);
  const revenue = page.getByRole('button', { name: 'Download revenue CSV' });
  await page.waitForFunction(() => !document.getElementById('revenue-csv').disabled);
  const [file] = await Promise.all([page.waitForEvent('download'), revenue.click()]);
  assert.match(file.suggestedFilename(), /^revenue-\d{4}-\d{2}-\d{4}-\d{2}\.csv$/);
  const csv = await readFile(await file.path(), 'utf8');
  assert.match(csv.split(/\r?\n/)[0].toLowerCase(), /month.*model/);

  const [register] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download register CSV' }).click()]);
  assert.equal(register.suggestedFilename(), `invoices-${lastMonth}.csv`, 'the register opens on the month just closed');
  await page.context().close();
});
