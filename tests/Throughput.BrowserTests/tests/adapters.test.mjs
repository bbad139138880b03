// A customer's adapter set on the dashboard: usage per adapter this month, each adapter's cap, and every adapter as CSV.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { call, meteringProducer, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
const adapters = ['contracts-v3', 'support-de', 'support-fr'];
let chromium;
let carol;
let set;
let producer;

before(async () => {
  chromium = await launch();
  carol = await newTenant(platform, 'Carol Counsel');
  const { region, producerId } = await newRegion(platform, 'gpt-4o-mini', 20, 'adapt');
  await call(platform, carol.key, 'POST', '/v1/adapters/batch', { adapters: adapters.map((id) => ({ id, baseModel: 'gpt-4o-mini', rank: 8, sizeMb: 24 })) });
  set = (await call(platform, carol.key, 'POST', '/v1/adapter-sets', {
    name: 'fine-tunes', model: 'gpt-4o-mini', region, type: 'Global', ptu: 1,
    adapters: [{ adapterId: 'contracts-v3' }, { adapterId: 'support-de' }, { adapterId: 'support-fr', cap: 0.25 }],
  })).body;
  producer = await meteringProducer(platform, producerId);
  // Six requests in turn: two per adapter, 100 prompt and 10 generated tokens each.
  await producer.publish(set.id, { count: 6, prompt: 100, output: 10, adapters });
});

after(async () => {
  await producer?.close();
  await chromium?.close();
});

test('a customer sees an adapter set\'s usage per adapter with its caps and downloads every adapter as CSV', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, carol.key);
  await page.waitForURL(/customer\.html/);
  await page.goto(`/customer.html?deployment=${encodeURIComponent(set.id)}`);
  const card = page.getByRole('region', { name: 'Usage per adapter' });
  await card.getByRole('cell', { name: 'support-fr' }).waitFor({ timeout: 60_000 });
  const rows = await card.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.deepEqual(rows.map((r) => r[0]).sort(), adapters);
  assert.ok(rows.every((r) => r[1] === '2' && r[2] === '200'), `two requests of 100 prompt tokens each: ${JSON.stringify(rows)}`);
  assert.equal(rows.find((r) => r[0] === 'support-fr').at(-1), '25 %');
  assert.equal(rows.find((r) => r[0] === 'support-de').at(-1), 'none');
  await screenshot(page, '13-customer-adapters');

  const [file] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download every adapter as CSV' }).click()]);
  const lines = (await readFile(await file.path(), 'utf8')).replace(/^\uFEFF/, '').split('\r\n').filter(Boolean);
  assert.equal(lines[0], 'deploymentId,adapterId,month,records,promptTokens,cachedTokens,outputTokens,weightedTokens,spilledRecords');
  assert.deepEqual(lines.slice(1).map((l) => l.split(',')[1]), adapters);
  await page.context().close();
});
