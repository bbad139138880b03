// A customer's webhook receiver is down for its first request: the dashboard's delivery log shows the refusal, the retry
// and the delivery, and the receiver verifies every signature as docs/webhooks.md tells it to.
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { launch, newPage, screenshot, signIn } from '../browser.mjs';
import { buy, call, newRegion, newTenant, platformFromEnvironment } from '../platform.mjs';

const platform = platformFromEnvironment();
let chromium;
let erin;
let receiver;
const arrivals = [];

/** The Node.js counterpart of the documented verifier. */
function verify(secret, headers, body) {
  const [id, ts, sigs] = [headers['webhook-id'], headers['webhook-timestamp'], headers['webhook-signature']];
  if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = Buffer.from(`v1,${createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64')}`);
  return sigs.split(' ').some((s) => s.length === expected.length && timingSafeEqual(Buffer.from(s), expected));
}

before(async () => {
  chromium = await launch();
  erin = await newTenant(platform, 'Erin Events');
  receiver = createServer((request, response) => {
    const chunks = [];
    request.on('data', (c) => chunks.push(c));
    request.on('end', () => {
      arrivals.push({ headers: request.headers, body: Buffer.concat(chunks) });
      response.writeHead(arrivals.length === 1 ? 503 : 204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
});
after(async () => {
  receiver?.close();
  await chromium?.close();
});

test('the customer page shows each endpoint with its deliveries: refused once, retried, delivered', async () => {
  const url = `http://127.0.0.1:${receiver.address().port}/throughput`;
  const endpoint = (await call(platform, erin.key, 'POST', '/v1/webhooks/endpoints', { url, eventTypes: ['deployment.purchased', 'deployment.resized'] })).body;
  const { region } = await newRegion(platform, 'gpt-4o-mini', 10, 'hook');
  const deployment = await buy(platform, erin.key, { name: 'hooked', model: 'gpt-4o-mini', region, ptu: 1 });

  const page = await newPage(chromium.browser, platform.url);
  await signIn(page, erin.key);
  await page.waitForURL(/customer\.html/);
  const log = page.getByRole('region', { name: `Deliveries to ${url}` });
  await log.getByRole('row').filter({ hasText: 'deployment.purchased' }).filter({ hasText: 'Delivered' }).waitFor({ timeout: 30_000 });
  const row = log.getByRole('row').filter({ hasText: 'deployment.purchased' });
  const cells = await row.getByRole('cell').allInnerTexts();
  assert.deepEqual(cells.slice(2, 5), ['Delivered', '2', '204'], 'refused once, then delivered');
  await screenshot(page, '14-customer-webhooks');

  assert.equal(arrivals.length, 2);
  assert.equal(arrivals[0].headers['webhook-id'], arrivals[1].headers['webhook-id'], 'a retry carries the same id');
  for (const a of arrivals) assert.ok(verify(endpoint.secret, a.headers, a.body), 'signed with the endpoint secret');
  const payload = JSON.parse(arrivals[1].body);
  assert.deepEqual([payload.type, payload.tenantId, payload.data.deploymentId], ['deployment.purchased', erin.tenantId, deployment.id]);
});
