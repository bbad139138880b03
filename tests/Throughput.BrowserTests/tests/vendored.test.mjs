// The chart library the host serves is exactly the one package-lock.json pins (npm run vendor copies it).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { vendorDir, vendored } from '../vendor.mjs';

const modules = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules');

test('the vendored chart.js is the locked version, byte for byte', () => {
  for (const [from, to] of vendored)
    assert.ok(readFileSync(join(modules, from)).equals(readFileSync(join(vendorDir, to))), `${to} differs from node_modules/${from}: run npm run vendor`);
});
