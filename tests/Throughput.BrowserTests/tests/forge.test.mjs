// An operator sees Forge's global view: per geography and region, capacity, PTUs sold and placed, and what was served;
// the fleet's sold ÷ capacity at the top. Global deployments of gpt-5.1 in the eu geography, one of them split.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { buy, call, meteringProducer, newServingNode, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
const model = 'gpt-5.1';
let chromium;
let producer;

before(async () => {
  chromium = await launch();
  for (const region of ['swedencentral', 'westeurope']) {
    await call(platform, platform.operatorKey, 'PUT', `/v1/operator/pools/${model}/${region}`, { capacityPtu: 10 });
  }
  const erin = await newTenant(platform, 'Erin Everywhere');
  const whole = await buy(platform, erin.key, { name: 'whole', model, region: 'swedencentral', ptu: 8 });
  await buy(platform, erin.key, { name: 'west', model, region: 'westeurope', ptu: 6 });
  // 2 free in swedencentral, 4 in westeurope: split, 4 + 1
  const split = await buy(platform, erin.key, { name: 'split', model, region: 'swedencentral', ptu: 5 });
  assert.deepEqual(split.placement, [{ region: 'swedencentral', ptu: 1 }, { region: 'westeurope', ptu: 4 }]);
  producer = await meteringProducer(platform, await newServingNode(platform, ['swedencentral', 'westeurope']));
  // Served a minute and a half ago: within the last 5 whole minutes as soon as it is metered.
  await producer.publish(whole.id, { count: 10, prompt: 1000, output: 0, agoMs: 90_000 });
  await producer.publish(split.id, { count: 10, prompt: 1000, output: 0, agoMs: 90_000 });
});

after(async () => {
  await producer?.close();
  await chromium?.close();
});

test('an operator sees the global view: each region\'s capacity, sold, placed and served, and the fleet\'s sold share', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, platform.operatorKey);
  await page.waitForURL(/operator\.html/);
  const geographies = page.locator('#geographies');
  // Sold is counted by the asynchronous projections, placed is read from the pools: the page shows sold once they catch up.
  // eu: 20 PTU, 19 bought, 19 placed: 95 %
  await geographies.getByRole('row', { name: /^eu / }).filter({ hasText: /swedencentral, westeurope\s*20\s*19\s*19\s*95 %/ }).waitFor({ timeout: 30_000 });
  const regions = page.locator('#global-regions');
  // swedencentral: 13 bought there (8 + 5), 9 placed there (8 + 1); westeurope: 6 bought, 10 placed
  await regions.getByRole('row', { name: /^swedencentral / }).filter({ hasText: /^swedencentral\s*eu\s*10\s*13\s*9\s*130 %.*90 %/ }).waitFor({ timeout: 30_000 });
  await regions.getByRole('row', { name: /^westeurope / }).filter({ hasText: /^westeurope\s*eu\s*10\s*6\s*10\s*60 %.*100 %/ }).waitFor({ timeout: 30_000 });
  // Served: 10,000 + 2,000 weighted tokens in swedencentral, 8,000 in westeurope, of 10 × 4,750 × 5 each: 5.05 % and 3.37 %
  await regions.getByRole('row', { name: /^westeurope / }).filter({ hasText: '3.37 %' }).waitFor({ timeout: 30_000 });
  assert.match(await regions.getByRole('row', { name: /^swedencentral / }).textContent(), /90 %5\.05 %/);
  assert.match(await regions.getByRole('row', { name: /^westeurope / }).textContent(), /100 %3\.37 %/);
  assert.match(await page.locator('#k-sold-share').textContent(), /\d %$/);
  await screenshot(page, '15-operator-global-view');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
