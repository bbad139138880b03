// Accessible basics: keyboard-only sign-in and navigation, labelled fields, readable in a narrow window, sign-out.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { buy, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
let chromium;
let erin;

before(async () => {
  chromium = await launch();
  erin = await newTenant(platform, 'Erin Energy');
  const { region } = await newRegion(platform, 'gpt-4o', 5, 'northeu');
  await buy(platform, erin.key, { name: 'assistant', model: 'gpt-4o', region, ptu: 1 });
});
after(async () => { await chromium?.close(); });

test('a wrong key is refused with a message next to the field', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, 'tpk_knope.wrong-secret');
  await page.getByRole('alert').getByText('That key was not accepted').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.context().close();
});

test('sign-in, the page and sign-out work from the keyboard alone', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await page.goto('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key', 'the key field has focus');
  await page.keyboard.type(erin.key);
  await page.keyboard.press('Enter');
  await page.waitForURL(/customer\.html/);
  await page.getByRole('heading', { name: 'assistant' }).waitFor();

  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  const order = [];
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => document.activeElement.id || document.activeElement.textContent.trim()));
  }
  assert.ok(order.includes('Sign out'), `sign-out is reachable: ${order}`);
  assert.ok(order.includes('window'), `the window choice is reachable: ${order}`);

  // Every form field has a label.
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select')].filter((f) => f.labels.length === 0).map((f) => f.id));
  assert.deepEqual(unlabelled, []);

  await page.getByRole('button', { name: 'Sign out' }).focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(/index\.html/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the key is forgotten');
  await page.goto('/customer.html');
  await page.waitForURL(/index\.html/);
  await page.context().close();
});

test('pages are readable in a narrow window', async () => {
  const page = await newPage(chromium.browser, platform.url, { width: 390, height: 844 });
  await signIn(page, erin.key);
  await page.getByRole('heading', { name: 'assistant' }).waitFor();
  await page.waitForFunction(() => window.Chart?.getChart('c-tokens')?.data.labels.length > 0);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`);
  await screenshot(page, '07-customer-narrow');

  const operator = await newPage(chromium.browser, platform.url, { width: 390, height: 844 });
  await signIn(operator, platform.operatorKey);
  await operator.locator('#pools table').waitFor();
  assert.ok(await operator.evaluate(() => document.documentElement.scrollWidth - window.innerWidth) <= 0);
  await screenshot(operator, '08-operator-narrow');
  await page.context().close();
  await operator.context().close();
});
