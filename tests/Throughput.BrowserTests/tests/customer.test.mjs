// A customer watches a deployment's charts fill while load arrives, resizes it and sees the purchased rate move;
// another customer cannot open that deployment's page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { buy, meteringProducer, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
let chromium;
let alice;
let deployment;
let producer;

before(async () => {
  chromium = await launch();
  alice = await newTenant(platform, 'Alice Analytics');
  const { region, producerId } = await newRegion(platform, 'gpt-4o-mini', 20, 'westeu');
  deployment = await buy(platform, alice.key, { name: 'support-bot', model: 'gpt-4o-mini', region, ptu: 0.5 });
  await buy(platform, alice.key, { name: 'batch-summaries', model: 'gpt-4o-mini', region, ptu: 1 });
  producer = await meteringProducer(platform, producerId);
});

after(async () => {
  await producer?.close();
  await chromium?.close();
});

/** Sum of one chart dataset as the page holds it now. */
const total = (page, chart, dataset) =>
  page.evaluate(([c, d]) => window.Chart.getChart(c).data.datasets[d].data.reduce((a, b) => a + (b ?? 0), 0), [chart, dataset]);
const last = (page, chart, dataset) =>
  page.evaluate(([c, d]) => window.Chart.getChart(c).data.datasets[d].data.at(-1), [chart, dataset]);

test('a customer signs in and sees the chart fill as load arrives, without reloading', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await page.goto('/');
  await screenshot(page, '01-sign-in');
  await signIn(page, alice.key);
  await page.waitForURL(/customer\.html/);
  await page.getByRole('heading', { name: 'support-bot' }).waitFor();
  await page.waitForFunction(() => window.Chart?.getChart('c-tokens')?.data.labels.length === 15); // a new deployment's window starts near its creation
  assert.equal(await total(page, 'c-tokens', 0), 0, 'no usage before the load starts');
  await page.evaluate(() => { window.notReloaded = true; });

  // About 45% of 0.5 PTU's rate: weighted 80 − 20 + 4 × 15 = 120 per request.
  const load = producer.steady(deployment.id, { count: 2, prompt: 80, cached: 20, output: 15 }, 500);
  try {
    await page.waitForFunction(() => window.Chart.getChart('c-tokens').data.datasets[0].data.at(-1) > 0, null, { timeout: 30_000 });
    const first = await total(page, 'c-tokens', 0);
    await page.waitForFunction((seen) => window.Chart.getChart('c-tokens').data.datasets[0].data.reduce((a, b) => a + b, 0) > seen, first, { timeout: 30_000 });
    assert.ok(await total(page, 'c-tokens', 2) > 0, 'generated tokens are charted too');
    assert.ok(await total(page, 'c-weighted', 0) > 0, 'weighted tokens are charted');
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page updated in place');

    // A burst past the purchased rate: the deployment is throttled and the minute is marked.
    load.shape = { count: 12, prompt: 400, cached: 0, output: 60 };
    await page.waitForFunction(() => window.Chart.getChart('c-util').data.datasets[2].data.at(-1) === 1, null, { timeout: 60_000 });
    await page.locator('#k-state .badge', { hasText: 'Throttled' }).waitFor({ timeout: 30_000 });
    load.shape = { count: 2, prompt: 80, cached: 20, output: 15 };
    await screenshot(page, '02-customer-deployment');
  } finally {
    await load.stop();
  }
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a customer resizes with the ETag and sees the purchased-rate line move', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, alice.key);
  await page.waitForURL(/customer\.html/);
  await page.getByRole('heading', { name: 'support-bot' }).waitFor();
  await page.waitForFunction(() => window.Chart?.getChart('c-weighted')?.data.datasets[1].data.length > 0);
  assert.equal(await last(page, 'c-weighted', 1), 18_500, '0.5 PTU of gpt-4o-mini buys 18,500 weighted tokens per minute');

  // The calculator sizes a workload and fills the resize form.
  await page.getByLabel('Requests per minute').fill('100');
  await page.getByLabel('Prompt tokens per request').fill('400');
  await page.getByLabel('Generated tokens per request').fill('60');
  await page.getByLabel('Cache hit rate (%)').fill('25');
  await page.getByRole('button', { name: 'Estimate PTUs' }).click();
  await page.getByText(/This workload needs 1\.5 PTU/).waitFor();
  await page.getByRole('button', { name: 'Use 1.5 PTU in the resize form' }).click();
  assert.equal(await page.getByLabel('New PTU amount').inputValue(), '1.5');

  await page.getByLabel('New PTU amount').fill('2');
  await page.getByRole('button', { name: 'Resize', exact: true }).click();
  await page.getByText('Resized to 2 PTU: 74,000 weighted tokens per minute.').waitFor();
  await page.waitForFunction(() => window.Chart.getChart('c-weighted').data.datasets[1].data.at(-1) === 74_000);
  assert.equal(await last(page, 'c-ptu', 0), 2);
  assert.equal(await page.locator('#k-ptu').textContent(), '2 PTU');

  // The invoicing API may not exist yet: then the draft reads "no draft yet"; either way the page does not fail.
  await page.locator('#invoice > *').first().waitFor();
  await screenshot(page, '03-customer-resized');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a resize against a stale ETag is refused and the page shows why', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, alice.key);
  await page.getByRole('heading', { name: 'support-bot' }).waitFor();
  // The page keeps the ETag it has: its refreshes of the deployment are cut off from here on.
  await page.route('**/v1/deployments/*', (route) => (route.request().method() === 'GET' ? route.abort() : route.continue()));
  const headers = { Authorization: `Bearer ${alice.key}` };
  const current = await fetch(`${platform.url}/v1/deployments/${deployment.id}`, { headers });
  const elsewhere = await fetch(`${platform.url}/v1/deployments/${deployment.id}/resize`, {
    method: 'POST', headers: { ...headers, 'If-Match': current.headers.get('etag'), 'Content-Type': 'application/json' }, body: JSON.stringify({ ptu: 2.5 }),
  });
  assert.equal(elsewhere.status, 200, 'someone else resized first');
  await page.getByLabel('New PTU amount').fill('3');
  await page.getByRole('button', { name: 'Resize', exact: true }).click();
  await page.getByText(/changed since the page loaded it/).waitFor();
  await page.context().close();
});

test('a customer cannot open another tenant\'s deployment page', async () => {
  const bob = await newTenant(platform, 'Bob Robotics');
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, bob.key);
  await page.waitForURL(/customer\.html/);
  await page.getByText('You have no deployments yet.').waitFor();
  await page.goto(`/customer.html?deployment=${encodeURIComponent(deployment.id)}`);
  await page.getByText(`No deployment '${deployment.id}' in your account.`).waitFor();
  assert.equal(await page.locator('canvas').count(), 0, 'no chart of another tenant\'s deployment');
  assert.equal(await page.getByText('support-bot').count(), 0);
  await screenshot(page, '04-customer-other-tenant');
  await page.context().close();
});
