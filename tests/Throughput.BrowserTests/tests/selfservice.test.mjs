// A customer on their own: sizes a workload before owning any deployment, picks a region that has room, sees the price in
// their own currency, buys, turns spillover on and off, and releases after confirming; the API shows each change.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { call, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
let chromium;
let dora;
let roomy;
let tight;
let bought;

const MODEL = 'gpt-4.1-mini'; // 14,900 weighted tokens/min per PTU, 0.92 EUR per PTU-hour; no other browser test sells it

before(async () => {
  chromium = await launch();
  dora = await newTenant(platform, 'Dora Datenwerk', 'EUR');
  ({ region: roomy } = await newRegion(platform, MODEL, 10, 'fra'));
  ({ region: tight } = await newRegion(platform, MODEL, 1, 'par'));
});
after(async () => { await chromium?.close(); });

const freeIn = async (region) =>
  (await call(platform, platform.operatorKey, 'GET', '/v1/operator/pools')).body.find((p) => p.model === MODEL && p.region === region).freePtu;
const asDora = (path) => call(platform, dora.key, 'GET', path);
const signedIn = async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, dora.key);
  await page.waitForURL(/customer\.html/);
  return page;
};

test('with no deployment yet, the calculator prices a workload in EUR and the region list offers only regions with room', async () => {
  const page = await signedIn();
  await page.getByText('You have no deployments yet.').waitFor();
  await page.getByLabel('Model').selectOption(MODEL);
  await page.locator('#b-model-help', { hasText: 'costs 0.92 EUR per hour' }).waitFor();
  assert.doesNotMatch(await page.locator('main').innerText(), /USD/, 'no price in another currency');

  // 20 requests × (1,000 prompt + 4 × 100 generated) = 28,000 weighted/min ÷ 14,900 = 1.88 → 1.9 PTU; × 0.92 = 1.748 EUR/h.
  await page.getByLabel('Requests per minute').fill('20');
  await page.getByLabel('Prompt tokens per request').fill('1000');
  await page.getByLabel('Generated tokens per request').fill('100');
  await page.getByLabel('Cache hit rate (%)').fill('0');
  await page.getByRole('button', { name: 'Estimate PTUs' }).click();
  await page.getByText(/This workload needs 1\.9 PTU of gpt-4\.1-mini.*for 1\.748 EUR per hour/).waitFor();
  await page.getByRole('button', { name: 'Use 1.9 PTU to buy' }).click();
  assert.equal(await page.getByLabel('PTUs', { exact: true }).inputValue(), '1.9');

  // Capacity discovery: the 1-PTU region cannot take 1.9 PTU, so it is not offered (once the answer for 1.9 PTU is in).
  await page.getByText(/regions have 1\.9 PTU of gpt-4\.1-mini free/).waitFor();
  const offered = await page.locator('#b-region option').evaluateAll((options) => options.map((o) => o.value));
  assert.ok(offered.includes(roomy), `${roomy} is offered: ${offered}`);
  assert.ok(!offered.includes(tight), `${tight} has only 1 PTU free: ${offered}`);
  await page.getByText('1.9 PTU × 0.92 EUR per PTU-hour = 1.748 EUR per hour').waitFor();

  // A smaller amount fits the small region too.
  await page.getByLabel('PTUs', { exact: true }).fill('0.5');
  await page.locator('#b-region option', { hasText: `${tight} · 1 PTU available` }).waitFor({ state: 'attached' });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a customer buys through the page, once, with an Idempotency-Key', async () => {
  const page = await signedIn();
  await page.getByLabel('Model').selectOption(MODEL);
  await page.getByLabel('Deployment name').fill('eu-assistant');
  await page.getByLabel('PTUs', { exact: true }).fill('1.9');
  await page.locator('#b-region option', { hasText: roomy }).waitFor({ state: 'attached' });
  await page.getByLabel('Region').selectOption(roomy);
  await page.getByText('= 1.748 EUR per hour').waitFor();
  await screenshot(page, '11-customer-buy');

  const purchase = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/v1/deployments');
  await page.getByRole('button', { name: 'Buy', exact: true }).click();
  assert.match((await purchase).headers()['idempotency-key'] ?? '', /^[0-9a-f]{32}$/);
  await page.waitForURL(/customer\.html\?deployment=dep-/);
  await page.getByRole('heading', { name: 'eu-assistant' }).waitFor();
  assert.equal(await page.locator('#k-ptu').textContent(), '1.9 PTU');
  // Resizing quotes the deployment's own price, fixed at purchase and in its currency (not today's catalog).
  await page.locator('#ptu-help', { hasText: 'costs 0.92 EUR per hour (this deployment\'s price, fixed at purchase).' }).waitFor();

  const mine = (await asDora('/v1/deployments')).body;
  assert.equal(mine.length, 1, 'bought once');
  bought = mine[0];
  assert.deepEqual([bought.model, bought.region, bought.ptu, bought.spillover, bought.status], [MODEL, roomy, 1.9, false, 'Active']);
  assert.equal(await freeIn(roomy), 8.1);

  // Honest numbers: the bucket level is named as such, and the current minute is drawn as partial.
  await page.waitForFunction(() => window.Chart?.getChart('c-weighted')?.data.labels.length > 0);
  assert.equal(await page.getByText('Utilization now').count(), 0);
  await page.getByText('Bucket level', { exact: false }).first().waitFor();
  const [fullColor, lastColor] = await page.evaluate(() => {
    const colors = window.Chart.getChart('c-weighted').data.datasets[0].backgroundColor;
    return [colors[0], colors.at(-1)];
  });
  assert.notEqual(lastColor, fullColor, 'the current minute is drawn unlike the full minutes before it');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('spillover is turned on and off from the page', async () => {
  const page = await signedIn();
  await page.getByRole('heading', { name: 'eu-assistant' }).waitFor();
  await page.getByText(/billed per 1M tokens: .*EUR prompt/).waitFor();
  const box = page.getByLabel('Serve requests above the purchased rate as spillover');
  assert.equal(await box.isChecked(), false);

  await box.check();
  await page.getByText('Spillover is on').waitFor();
  assert.equal((await asDora(`/v1/deployments/${bought.id}`)).body.spillover, true);
  await page.locator('#d-meta', { hasText: 'spillover on' }).waitFor();

  await box.uncheck();
  await page.getByText('Spillover is off').waitFor();
  assert.equal((await asDora(`/v1/deployments/${bought.id}`)).body.spillover, false);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('release asks first, sends the ETag, and the deployment then shows as released', async () => {
  const page = await signedIn();
  await page.getByRole('heading', { name: 'eu-assistant' }).waitFor();

  await page.getByRole('button', { name: 'Release this deployment…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Release eu-assistant?' });
  await dialog.getByText('Its 1.9 PTU of gpt-4.1-mini').waitFor();
  await dialog.getByRole('button', { name: 'Keep it' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal((await asDora(`/v1/deployments/${bought.id}`)).body.status, 'Active', 'keeping it changes nothing');

  const etag = (await asDora(`/v1/deployments/${bought.id}`)).headers.get('etag');
  await page.getByRole('button', { name: 'Release this deployment…' }).click();
  const release = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/release'));
  await dialog.getByRole('button', { name: 'Yes, release it' }).click();
  assert.equal((await release).headers()['if-match'], etag);
  await page.locator('#k-state .badge', { hasText: 'Released' }).waitFor();
  assert.equal(await page.locator('#k-ptu').textContent(), 'Released');
  await page.getByText(/^Released .*billing for them stopped then/).waitFor();
  assert.equal(await page.getByLabel('New PTU amount').isVisible(), false, 'no resize form on a released deployment');
  assert.equal(await page.getByRole('button', { name: 'Release this deployment…' }).isVisible(), false);
  assert.equal((await asDora(`/v1/deployments/${bought.id}`)).body.status, 'Released');
  assert.equal(await freeIn(roomy), 10);
  // The tabs follow without a reload.
  await page.locator('#deployments a', { hasText: 'eu-assistant · gpt-4.1-mini · released' }).waitFor();

  // Opened afresh, it still reads as released.
  await page.reload();
  await page.locator('#deployments a', { hasText: 'eu-assistant · gpt-4.1-mini · released' }).waitFor();
  await page.locator('#k-state .badge', { hasText: 'Released' }).waitFor();
  assert.equal(await page.getByLabel('New PTU amount').isVisible(), false);
  await screenshot(page, '12-customer-released');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
