// An operator sees pools (capacity, sold, free), deployments by utilization, a deployment becoming throttled
// while the page is open, and quarantined metering.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { buy, meteringProducer, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
let chromium;
let region;
let steady;
let hot;
let producer;

before(async () => {
  chromium = await launch();
  const carol = await newTenant(platform, 'Carol Compute');
  const made = await newRegion(platform, 'gpt-4o-mini', 30, 'eastus');
  region = made.region;
  steady = await buy(platform, carol.key, { name: 'chat', model: 'gpt-4o-mini', region, ptu: 2 });
  hot = await buy(platform, carol.key, { name: 'batch', model: 'gpt-4o-mini', region, ptu: 0.5 });
  await buy(platform, carol.key, { name: 'idle', model: 'gpt-4o-mini', region, ptu: 1 });
  producer = await meteringProducer(platform, made.producerId);
});

after(async () => {
  await producer?.close();
  await chromium?.close();
});

test('an operator sees pools, utilization, throttling as it happens and quarantined metering', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, platform.operatorKey);
  await page.waitForURL(/operator\.html/);
  const pools = page.locator('#pools');
  await pools.getByRole('row', { name: new RegExp(region) }).waitFor();
  const poolRow = await pools.getByRole('row', { name: new RegExp(region) }).textContent();
  assert.match(poolRow, /gpt-4o-mini.*30.*3\.5.*26\.5/, 'capacity 30, sold 3.5, free 26.5');
  await page.getByText('Nothing is throttled.').or(page.locator('#throttled table')).waitFor();
  assert.equal(await page.locator('#throttled').getByText(hot.id).count(), 0);

  // One deployment at about half its rate, one far past it; a message no schema accepts.
  const load = producer.steady(steady.id, { count: 3, prompt: 500, cached: 0, output: 60 }, 500);
  try {
    for (let i = 0; i < 6; i++) await producer.publish(hot.id, { count: 12, prompt: 400, cached: 0, output: 60 });
    await producer.publishMalformed(hot.id);
    await page.locator('#throttled').getByRole('row', { name: new RegExp(hot.id) }).waitFor({ timeout: 30_000 });
    await page.locator('#quarantine tbody tr').first().waitFor({ timeout: 30_000 });
    await page.waitForFunction((id) => document.querySelector('#deployments tbody tr td')?.textContent !== '' &&
      [...document.querySelectorAll('#deployments tbody tr')].some((tr) => tr.textContent.includes(id) && !tr.textContent.includes(' 0 %')), steady.id, { timeout: 30_000 });

    // Deployments are listed most utilized first; the region filter narrows them to one region.
    const first = await page.locator('#deployments tbody tr').first().textContent();
    assert.ok(first.includes('Throttled'), `the most utilized deployment comes first: ${first}`);
    await page.getByLabel('Region', { exact: true }).selectOption(region);
    await page.waitForFunction(() => document.querySelectorAll('#deployments tbody tr').length === 3);
    assert.equal(await page.locator('#deployments tbody tr').filter({ hasText: region }).count(), 3);
    assert.ok(Number(await page.locator('#k-throttled').textContent()) >= 1);
    await page.getByLabel('Region', { exact: true }).selectOption('');
    await page.waitForTimeout(500);
    await screenshot(page, '05-operator');
  } finally {
    await load.stop();
  }
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a tenant key does not open the operator page', async () => {
  const dave = await newTenant(platform, 'Dave');
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, dave.key);
  await page.waitForURL(/customer\.html/);
  await page.goto('/operator.html');
  await page.getByText('This page is for Operator keys; you are signed in with a Tenant key.').waitFor();
  await page.context().close();
});
