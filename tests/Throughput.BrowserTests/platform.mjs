// The platform as the browser tests see it: a real host process on a free port, set up through its API,
// fed metering through raw RabbitMQ as a serving node in any language would.
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const artifacts = join(root, 'artifacts');

const env = (name, fallback) => process.env[name] || fallback;
/** The broker as the platform's side sees it (clean-up), or as a serving node with its own user and password. */
export const rabbitUrl = (user = env('THROUGHPUT_RABBIT_USER', 'throughput'), password = env('THROUGHPUT_RABBIT_PASSWORD', 'throughput')) =>
  `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@` +
  `${env('THROUGHPUT_RABBIT_HOST', '127.0.0.1')}:${env('THROUGHPUT_RABBIT_PORT', '5672')}/${encodeURIComponent(env('THROUGHPUT_RABBIT_VHOST', 'throughput'))}`;

/** Each serving node's own broker user, as the platform issued it. */
const nodeUsers = new Map();

const freePort = () => new Promise((resolve, reject) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  }).on('error', reject);
});

export const newOperatorKey = () => `tpk_kbrowser${randomBytes(4).toString('hex')}.${randomBytes(24).toString('base64url')}`;

/**
 * Starts the built platform dll with a bootstrap operator key, its own schema and metering exchange; resolves when ready.
 * `clockStart` sets the host's clock (Clock:Start) to start at that instant; `now()` then tells the host's time, which
 * metering sent to it must be stamped with. `settings` are further host settings as environment variables.
 */
export async function startPlatform({ schema, operatorKey = newOperatorKey(), clockStart, settings = {}, log: logName = 'browser-tests-host', configuration = env('THROUGHPUT_CONFIGURATION', 'Release') }) {
  const dll = join(root, 'src', 'Throughput.Platform', 'bin', configuration, 'net10.0', 'Throughput.Platform.dll');
  if (!existsSync(dll)) throw new Error(`${dll} is missing: build the solution first (dotnet build Throughput.sln -c ${configuration})`);
  const url = `http://127.0.0.1:${await freePort()}`;
  const exchange = `browser.metering.${randomBytes(5).toString('hex')}`;
  mkdirSync(artifacts, { recursive: true });
  const log = join(artifacts, `${logName}.log`);
  const out = createWriteStream(log);
  // The host's clock starts a moment after the process does, so this runs a little ahead of it: never behind.
  const offset = clockStart ? clockStart.getTime() - Date.now() : 0;
  const child = spawn('dotnet', [dll, '--urls', url], {
    cwd: dirname(dll),
    env: {
      ...process.env,
      THROUGHPUT_PG_SCHEMA: schema,
      Access__BootstrapOperatorKey: operatorKey,
      Metering__Exchange: exchange,
      Metering__QueuePrefix: `${exchange}.p`,
      Metering__Partitions: '2',
      Logging__LogLevel__Default: 'Warning',
      ...(clockStart ? { Clock__Start: clockStart.toISOString() } : {}),
      ...settings,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  const exited = new Promise((resolve) => child.once('exit', resolve));

  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`platform host exited with ${child.exitCode}; log: ${log}`);
    try {
      if ((await fetch(`${url}/health/ready`)).ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`platform host not ready in 90 s; log: ${log}`);
    await new Promise((r) => setTimeout(r, 500));
  }

  return {
    url, operatorKey, exchange, log,
    now: () => new Date(Date.now() + offset),
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
      await deleteTopology(exchange, 2);
    },
  };
}

async function deleteTopology(exchange, partitions) {
  const connection = await amqp.connect(rabbitUrl());
  try {
    for (let p = 0; p < partitions; p++) {
      for (const suffix of ['', '_error', '_skipped']) {
        // Each delete gets its own channel: deleting what is absent closes the channel.
        const channel = await connection.createChannel();
        channel.on('error', () => {});
        await channel.deleteQueue(`${exchange}.p${p}${suffix}`).catch(() => {});
        const other = await connection.createChannel();
        other.on('error', () => {});
        await other.deleteExchange(`${exchange}.p${p}${suffix}`).catch(() => {});
      }
    }
    const channel = await connection.createChannel();
    await channel.deleteExchange(exchange).catch(() => {});
  } finally {
    await connection.close().catch(() => {});
  }
}

/** The settings run.mjs hands to the test files. */
export function platformFromEnvironment() {
  return { url: process.env.THROUGHPUT_URL, operatorKey: process.env.THROUGHPUT_OPERATOR_KEY, exchange: process.env.THROUGHPUT_METERING_EXCHANGE };
}

/** An API call; throws on a failure status unless it is one the caller expects. */
export async function call(platform, key, method, path, body, { expect } = {}) {
  const response = await fetch(platform.url + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok && !(expect ?? []).includes(response.status))
    throw new Error(`${method} ${path} → ${response.status}: ${await response.text()}`);
  const type = response.headers.get('content-type') ?? '';
  return { status: response.status, headers: response.headers, body: type.includes('json') ? await response.json() : await response.text() };
}

const short = () => randomUUID().replaceAll('-', '').slice(0, 10);

/** A fresh tenant with a key of its own. */
export async function newTenant(platform, name, currency = 'USD') {
  const tenantId = `t-${short()}`;
  await call(platform, platform.operatorKey, 'POST', '/v1/operator/tenants', { tenantId, name: name ?? `Tenant ${tenantId}`, currency });
  const issued = await call(platform, platform.operatorKey, 'POST', `/v1/operator/tenants/${tenantId}/keys`);
  return { tenantId, key: issued.body.apiKey };
}

export async function newStaffKey(platform, role) {
  return (await call(platform, platform.operatorKey, 'POST', '/v1/operator/keys', { role, name: `browser tests ${role}` })).body.apiKey;
}

/** A pool in a region no other test uses, and a serving node allowed to meter there. */
export async function newRegion(platform, model, capacityPtu, prefix = 'r') {
  const region = `${prefix}${short()}`.slice(0, 14);
  await call(platform, platform.operatorKey, 'PUT', `/v1/operator/pools/${model}/${region}`, { capacityPtu });
  return { region, producerId: await newServingNode(platform, [region]) };
}

/** A serving node registered for these regions, with broker credentials of its own; its producer id. */
export async function newServingNode(platform, regions) {
  const producerId = `node-${short()}`;
  await call(platform, platform.operatorKey, 'PUT', `/v1/operator/serving-nodes/${producerId}`, { regions, tenants: [] });
  const issued = await call(platform, platform.operatorKey, 'POST', `/v1/operator/serving-nodes/${producerId}/credentials`);
  nodeUsers.set(producerId, { user: issued.body.brokerUser, password: issued.body.brokerPassword });
  return producerId;
}

export async function buy(platform, key, { name, model, region, ptu, spillover = false }) {
  return (await call(platform, key, 'POST', '/v1/deployments', { name, model, region, type: 'Global', ptu, spillover })).body;
}

/** A serving node's metering: batches of records as raw JSON with publisher confirms, sequence growing by one per batch. */
export async function meteringProducer(platform, producerId) {
  const node = nodeUsers.get(producerId);
  const connection = await amqp.connect(rabbitUrl(node.user, node.password));
  const channel = await connection.createConfirmChannel();
  let sequence = 0;
  const send = async (routingKey, content) => {
    channel.publish(platform.exchange, routingKey, content, {
      contentType: 'application/json', persistent: true, userId: node.user, headers: { 'throughput-version': 1 },
    });
    await channel.waitForConfirms();
  };
  return {
    /**
     * Publishes `count` requests of the given shape for one deployment as one batch, finished now on the host's clock
     * (or `agoMs` before); with `adapters`, the requests name them in turn (an adapter deployment or set).
     */
    async publish(deploymentId, { count = 1, prompt = 100, cached = 0, output = 10, spilled = false, adapters, agoMs = 0 } = {}) {
      const now = new Date((platform.now?.() ?? new Date()).getTime() - agoMs);
      sequence++;
      const records = Array.from({ length: count }, (_, i) => ({
        recordId: `${producerId}-${sequence}-${i}`, deploymentId, requestId: `req-${sequence}-${i}`,
        promptTokens: prompt, cachedTokens: cached, outputTokens: output, spilled, estimatedTokens: 0,
        startedAt: new Date(now.getTime() - 400).toISOString(), finishedAt: now.toISOString(),
        ...(adapters ? { adapterId: adapters[i % adapters.length] } : {}),
      }));
      await send(deploymentId, Buffer.from(JSON.stringify({ version: 1, producerId, sequence, sentAt: now.toISOString(), records })));
    },
    /** Something no schema accepts: the platform quarantines it. */
    publishMalformed: (routingKey) => send(routingKey, Buffer.from('{"version":1,"producerId":"broken-node","sequence":1,"records":"not a list"}')),
    /** Keeps publishing every `everyMs` until stopped; `shape` may be changed while it runs. */
    steady(deploymentId, shape, everyMs = 500) {
      const load = { shape, stopped: false };
      load.done = (async () => {
        while (!load.stopped) {
          await this.publish(deploymentId, load.shape);
          await new Promise((r) => setTimeout(r, everyMs));
        }
      })();
      load.stop = async () => { load.stopped = true; await load.done; };
      return load;
    },
    close: async () => { await channel.close(); await connection.close(); },
  };
}
