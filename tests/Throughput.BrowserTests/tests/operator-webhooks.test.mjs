// An operator's platform-wide webhook endpoint hears a tenant's purchase; the operator page lists the endpoint with the
// delivery, as the customer page does for a tenant's own endpoints.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { buy, call, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
let chromium;
let receiver;
let endpoint;
const arrivals = [];

before(async () => {
  chromium = await launch();
  receiver = createServer((request, response) => {
    const chunks = [];
    request.on('data', (c) => chunks.push(c));
    request.on('end', () => {
      arrivals.push(JSON.parse(Buffer.concat(chunks)));
      response.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
});
after(async () => {
  // The platform-wide endpoint hears every later test's tenants too: switched off before the receiver goes.
  if (endpoint) await call(platform, platform.operatorKey, 'POST', `/v1/webhooks/endpoints/${endpoint.id}/disable`);
  receiver?.close();
  await chromium?.close();
});

test("the operator page shows the platform-wide endpoints and what each delivered", async () => {
  const url = `http://127.0.0.1:${receiver.address().port}/platform`;
  endpoint = (await call(platform, platform.operatorKey, 'POST', '/v1/webhooks/endpoints', { url, eventTypes: ['deployment.purchased'] })).body;
  const tenant = await newTenant(platform, 'Olga Onboarding');
  const { region } = await newRegion(platform, 'gpt-4o-mini', 10, 'ophook');
  const deployment = await buy(platform, tenant.key, { name: 'heard', model: 'gpt-4o-mini', region, ptu: 1 });
  assert.equal((await call(platform, tenant.key, 'GET', '/v1/webhooks/endpoints')).body.length, 0, "a tenant does not see the platform's endpoints");

  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, platform.operatorKey);
  await page.waitForURL(/operator\.html/);
  const section = page.locator('#webhooks');
  await section.getByRole('heading', { name: url }).waitFor();
  const log = page.getByRole('region', { name: `Deliveries to ${url}` });
  await log.getByRole('row').filter({ hasText: 'deployment.purchased' }).filter({ hasText: 'Delivered' }).first().waitFor({ timeout: 30_000 });
  await section.scrollIntoViewIfNeeded();
  await screenshot(page, '17-operator-webhooks');

  const heard = arrivals.find((a) => a.data.deploymentId === deployment.id);
  assert.ok(heard, 'the receiver got the purchase');
  assert.deepEqual([heard.type, heard.tenantId], ['deployment.purchased', tenant.tenantId]);
});
