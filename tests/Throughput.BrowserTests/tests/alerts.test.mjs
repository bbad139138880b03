// A customer sets alerts on the customer page: a threshold the API refuses shows its field error and sets nothing;
// a spillover cap on one deployment and a utilization alert in percent are set as the API stores them; Remove takes
// one away.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { buy, call, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
let chromium;
let alma;
let deployment;

before(async () => {
  chromium = await launch();
  alma = await newTenant(platform, 'Alma Alerts');
  const { region } = await newRegion(platform, 'gpt-4o-mini', 10, 'alert');
  deployment = await buy(platform, alma.key, { name: 'watched', model: 'gpt-4o-mini', region, ptu: 1, spillover: true });
});
after(async () => {
  await chromium?.close();
});

test('the customer page sets alerts, shows the API refusal beside the form, and removes an alert', async () => {
  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, alma.key);
  await page.waitForURL(/customer\.html/);
  const form = page.locator('#alert-form');
  await page.locator('#alerts').getByText('No alerts yet').waitFor();

  await form.getByLabel('Watch').selectOption('SpilloverSpend');
  await form.getByLabel(/Threshold/).fill('0');
  await form.getByRole('button', { name: 'Set alert' }).click();
  await page.locator('#alert-error').getByText(/threshold/i).waitFor();
  assert.deepEqual((await call(platform, alma.key, 'GET', '/v1/alerts')).body, [], 'a refused threshold sets nothing');

  await form.getByLabel(/Threshold/).fill('250');
  await form.getByLabel('Deployment').selectOption(deployment.id);
  await form.getByLabel('Name').fill('spillover budget');
  await form.getByLabel(/^Cap/).check();
  await form.getByRole('button', { name: 'Set alert' }).click();
  const alerts = page.getByRole('region', { name: 'Alerts' });
  const capRow = alerts.getByRole('row').filter({ hasText: 'spillover budget' });
  await capRow.waitFor();
  assert.deepEqual((await capRow.getByRole('cell').allInnerTexts()).slice(0, 6), ['spillover budget', 'Spillover spend', deployment.id, '250', 'yes', 'armed']);
  assert.equal(await page.locator('#alert-error').innerText(), '');

  await form.getByLabel('Watch').selectOption('Utilization');
  assert.ok(await form.getByLabel(/^Cap/).isDisabled(), 'only a spillover spend alert caps');
  await form.getByLabel(/Threshold/).fill('80');
  await form.getByLabel('Name').fill('busy');
  await form.getByRole('button', { name: 'Set alert' }).click();
  await alerts.getByRole('row').filter({ hasText: 'busy' }).waitFor();
  await screenshot(page, '16-customer-alerts');

  const stored = (await call(platform, alma.key, 'GET', '/v1/alerts')).body;
  const byName = Object.fromEntries(stored.map((a) => [a.name, a]));
  assert.deepEqual([stored.length, byName['spillover budget'].threshold, byName['spillover budget'].capsSpillover, byName['spillover budget'].deploymentId],
    [2, 250, true, deployment.id]);
  assert.deepEqual([byName.busy.metric, byName.busy.threshold, byName.busy.deploymentId, byName.busy.capsSpillover], ['Utilization', 0.8, null, false], '80 % is a ratio of 0.8, over all deployments');

  await page.getByRole('button', { name: 'Remove alert spillover budget' }).click();
  await capRow.waitFor({ state: 'detached' });
  assert.deepEqual((await call(platform, alma.key, 'GET', '/v1/alerts')).body.map((a) => a.name), ['busy']);
});
