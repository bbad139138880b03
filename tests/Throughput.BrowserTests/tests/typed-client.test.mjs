// The OpenAPI document proven usable: types are generated from the running host's document with openapi-typescript,
// a small customer integration (client/customer.ts) is type-checked against them with the TypeScript compiler, then run
// against the host with openapi-fetch.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { call, newTenant, platformFromEnvironment } from '../platform.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const client = join(here, '..', 'client');
const platform = platformFromEnvironment();

test('a client generated from the OpenAPI document compiles against it and buys and resizes a deployment', async () => {
  const document = await (await fetch(`${platform.url}/openapi/v1.json`)).json();
  writeFileSync(join(client, 'api.d.ts'), astToString(await openapiTS(document)));

  const out = mkdtempSync(join(tmpdir(), 'typed-client-'));
  const program = ts.createProgram([join(client, 'customer.ts')], {
    strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    outDir: out, skipLibCheck: true,
  });
  const emitted = program.emit();
  const problems = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics]
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  assert.deepEqual(problems, [], 'the integration type-checks against the generated types');

  // The emitted module imports openapi-fetch: run it from here, where node_modules is.
  const compiled = join(client, 'customer.generated.mjs');
  writeFileSync(compiled, ts.sys.readFile(join(out, 'customer.js')));
  const { buyAndResize } = await import(pathToFileURL(compiled).href);
  const region = `typed${Date.now().toString(36)}`;
  await call(platform, platform.operatorKey, 'PUT', `/v1/operator/pools/gpt-4o-mini/${region}`, { capacityPtu: 10 });
  const tenant = await newTenant(platform);
  const { bought, resized } = await buyAndResize(platform.url, tenant.key, region);
  assert.equal(bought.ptu, 0.5);
  assert.equal(resized.id, bought.id);
  assert.equal(resized.ptu, 1);
});
