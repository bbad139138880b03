// Copies the locked chart.js build into the platform's wwwroot, so the host serves it without npm, a build step or a CDN.
// After changing chart.js's version in package.json: npm install && npm run vendor, and commit both.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const vendorDir = join(here, '..', '..', 'src', 'Throughput.Platform', 'wwwroot', 'vendor');
export const vendored = [
  ['chart.js/dist/chart.umd.min.js', 'chart.umd.min.js'],
  ['chart.js/LICENSE.md', 'chart.js.LICENSE.md'],
];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(vendorDir, { recursive: true });
  for (const [from, to] of vendored) copyFileSync(join(here, 'node_modules', from), join(vendorDir, to));
  const { version } = JSON.parse(readFileSync(join(here, 'node_modules', 'chart.js', 'package.json'), 'utf8'));
  console.log(`vendored chart.js ${version} into ${vendorDir}`);
}
