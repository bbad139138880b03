// Last month, lived through before the tests start: a host whose clock starts on the 20th of last month (Clock:Start)
// sells Contoso Docs two deployments and meters their traffic, part of it spilled over, sells Fabrikam Europe (billed in
// EUR) one deployment, then stops. The tests' own host,
// on the system clock, finds that month over and issues its invoice by itself, as it would any month's.
import { buy, call, meteringProducer, newRegion, newTenant, startPlatform } from './platform.mjs';

/** What last month metered into Contoso's spilled-over deployment, per request. */
const SPILLED = { count: 40, prompt: 4_200, cached: 1_000, output: 850, spilled: true };
const SPILLED_BATCHES = 3;

export async function liveLastMonth({ schema, operatorKey }) {
  const today = new Date();
  const clockStart = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 20, 9));
  const month = clockStart.toISOString().slice(0, 7);
  const platform = await startPlatform({ schema, operatorKey, clockStart, log: 'browser-tests-last-month-host' });
  let producer;
  try {
    const contoso = await newTenant(platform, 'Contoso Docs');
    const { region, producerId } = await newRegion(platform, 'gpt-4o-mini', 20, 'westus');
    await call(platform, operatorKey, 'PUT', `/v1/operator/pools/gpt-4o/${region}`, { capacityPtu: 10 });
    const writer = await buy(platform, contoso.key, { name: 'docs-writer', model: 'gpt-4o-mini', region, ptu: 2 });
    const review = await buy(platform, contoso.key, { name: 'docs-review', model: 'gpt-4o', region, ptu: 1, spillover: true });
    await call(platform, contoso.key, 'PUT', `/v1/deployments/${review.id}/spillover`, { enabled: true });
    const fabrikam = await newTenant(platform, 'Fabrikam Europe', 'EUR');
    const euro = await buy(platform, fabrikam.key, { name: 'eu-support', model: 'gpt-4o-mini', region, ptu: 1 });

    producer = await meteringProducer(platform, producerId);
    for (let i = 0; i < 4; i++) await producer.publish(writer.id, { count: 25, prompt: 900, cached: 300, output: 250 });
    for (let i = 0; i < SPILLED_BATCHES; i++) await producer.publish(review.id, SPILLED);
    const requests = SPILLED.count * SPILLED_BATCHES;
    const spilled = { Input: (SPILLED.prompt - SPILLED.cached) * requests, Cached: SPILLED.cached * requests, Output: SPILLED.output * requests };

    // The month's draft holds the spilled tokens once metering and the daemon have caught up.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const draft = await call(platform, contoso.key, 'GET', `/v1/invoices/draft?month=${month}`, undefined, { expect: [404] });
      const tokens = Object.fromEntries((draft.body.lines ?? []).filter((l) => l.kind === 'Spillover').map((l) => [l.tokenType, l.tokens]));
      if (Object.keys(spilled).every((type) => tokens[type] === spilled[type])) break;
      if (Date.now() > deadline) throw new Error(`last month's draft never showed the spilled tokens ${JSON.stringify(spilled)}: ${JSON.stringify(draft.body)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    return { month, tenant: contoso, deployments: [writer, review], spilled: { deploymentId: review.id, tokens: spilled }, euro: { tenant: fabrikam, deployment: euro } };
  } finally {
    await producer?.close();
    await platform.stop();
  }
}

/** The scenario as run.mjs hands it to the test files. */
export const lastMonthFromEnvironment = () => JSON.parse(process.env.THROUGHPUT_LAST_MONTH ?? 'null');
