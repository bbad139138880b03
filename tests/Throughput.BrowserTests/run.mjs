// Lives through last month on a host of its own (lastMonth.mjs), starts the browser tests' platform host in the same
// schema, runs the tests one file at a time with node's test runner, stops the host, and ends with one line in
// infra/test.sh's format: "browser tests: N passed, N failed, N skipped".
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { liveLastMonth } from './lastMonth.mjs';
import { newOperatorKey, startPlatform } from './platform.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// A schema of their own, emptied first, so the operator's and finance pages show exactly what these tests made.
const schema = process.env.THROUGHPUT_BROWSER_SCHEMA ?? 'throughput_browser';

const reset = spawnSync('psql', ['-v', 'ON_ERROR_STOP=1', '-qc', `drop schema if exists ${schema} cascade`], {
  env: {
    ...process.env,
    PGHOST: process.env.THROUGHPUT_PG_HOST ?? '127.0.0.1', PGPORT: process.env.THROUGHPUT_PG_PORT ?? '5432',
    PGDATABASE: process.env.THROUGHPUT_PG_DATABASE ?? 'throughput', PGUSER: process.env.THROUGHPUT_PG_USER ?? 'throughput',
    PGPASSWORD: process.env.THROUGHPUT_PG_PASSWORD ?? 'throughput',
  },
  encoding: 'utf8',
});
if (reset.status !== 0) console.warn(`could not empty schema ${schema} (${reset.error?.message ?? reset.stderr.trim()}); pages will show earlier runs' data too`);

const files = (process.argv.length > 2 ? process.argv.slice(2) : readdirSync(join(here, 'tests')).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => join('tests', f)));
let platform;
let lastMonth;
let livedFor;
try {
  const operatorKey = newOperatorKey();
  const started = Date.now();
  lastMonth = await liveLastMonth({ schema, operatorKey });
  livedFor = (Date.now() - started) / 1000;
  // Last month is over: its invoices are issued within seconds instead of after the usual two days' grace.
  platform = await startPlatform({ schema, operatorKey, settings: {
    Invoicing__GracePeriod: '00:00:01', Invoicing__IssueEvery: '00:00:02',
    // Webhooks to a receiver the tests run on loopback, retried after a second.
    Webhooks__AllowedHosts: '127.0.0.1', Webhooks__AllowHttp: 'true', Webhooks__SecretKey: randomBytes(32).toString('base64'),
    Webhooks__RetrySchedule: '00:00:01,00:00:02,00:00:04', Webhooks__AllowShortRetrySchedule: 'true', Webhooks__PollInterval: '00:00:00.200',
  } });
} catch (e) {
  console.error(e.message);
  console.log('browser tests: 0 passed, 1 failed, 0 skipped');
  process.exit(1);
}
console.log(`lived through ${lastMonth.month} as ${lastMonth.tenant.tenantId} in ${livedFor.toFixed(1)} s; platform host on ${platform.url} (schema ${schema}, log ${platform.log})`);

let output = '';
let code;
try {
  const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
    cwd: here,
    env: {
      ...process.env, THROUGHPUT_URL: platform.url, THROUGHPUT_OPERATOR_KEY: platform.operatorKey, THROUGHPUT_METERING_EXCHANGE: platform.exchange,
      THROUGHPUT_LAST_MONTH: JSON.stringify(lastMonth),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.on('data', (chunk) => { output += chunk; process.stdout.write(chunk); });
  code = await new Promise((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
} finally {
  await platform.stop();
}

// The spec reporter's closing counts ("ℹ pass 5"); cancelled tests count as failed.
const count = (name) => Number(output.match(new RegExp(`^\\S+ ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
let failed = count('fail') + count('cancelled');
if (code !== 0 && failed === 0) failed = 1; // the runner itself failed (a file that did not load, a crash)
console.log(`browser tests: ${count('pass')} passed, ${failed} failed, ${count('skipped') + count('todo')} skipped`);
process.exit(code !== 0 || failed > 0 ? 1 : 0);
