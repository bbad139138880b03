// Debian's Chromium driven by playwright-core (the test tool's own browser download does not work here).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { artifacts } from './platform.mjs';

export const screenshots = join(artifacts, 'screenshots');

/**
 * A headless Chromium with no background networking (the machine's network is closed). Playwright gives every
 * launch a fresh, empty --user-data-dir of its own and removes it on close.
 */
export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  return {
    browser,
    close: () => browser.close(),
  };
}

/** A fresh context (its own sessionStorage) whose page fails the test on any script error. */
export async function newPage(browser, baseURL, viewport = { width: 1360, height: 900 }) {
  const context = await browser.newContext({ baseURL, viewport, acceptDownloads: true, locale: 'en-GB', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 404/.test(m.text())) page.errors.push(m.text()); });
  return page;
}

export async function signIn(page, key) {
  await page.goto('/');
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function screenshot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}
