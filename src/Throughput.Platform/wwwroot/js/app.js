// Shared by every page: the signed-in key (sessionStorage only), authenticated API calls, polling, small DOM helpers.
// Pages hold no data of their own; everything shown comes from the API with the caller's key.

const KEY = 'throughput.key';
const CALLER = 'throughput.caller';

export const pageForRole = { Tenant: 'customer.html', Operator: 'operator.html', Finance: 'finance.html' };

export function signIn(key, caller) {
  sessionStorage.setItem(KEY, key);
  sessionStorage.setItem(CALLER, JSON.stringify(caller));
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(CALLER);
  location.assign('index.html');
}

export const caller = () => JSON.parse(sessionStorage.getItem(CALLER) ?? 'null');

/** An API call with the session's key (or the one given); a 401 ends the session. */
export async function api(path, { method = 'GET', body, headers = {}, key } = {}) {
  const token = key ?? sessionStorage.getItem(KEY);
  const response = await fetch(path, {
    method,
    headers: {
      Accept: 'application/json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  if (response.status === 401 && !key) {
    sessionStorage.removeItem(KEY);
    location.assign('index.html?expired=1');
  }
  return response;
}

/** The problem details' most useful sentence: field errors first, then detail, then title. */
export async function problemText(response) {
  try {
    const p = await response.json();
    const fields = Object.entries(p.errors ?? {}).map(([field, messages]) => `${field}: ${[].concat(messages).join(' ')}`);
    return fields.length ? fields.join(' ') : p.detail ?? p.title ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** Fetches an export (CSV unless another type is named) with the key, which a plain link could not send, and hands it to the browser as a download. */
export async function download(path, filename, type = 'text/csv') {
  const response = await api(path, { headers: { Accept: type } });
  if (!response.ok) throw new Error(await problemText(response));
  if (!(response.headers.get('Content-Type') ?? '').includes(type)) throw new Error(`this export is not offered as ${type}`);
  const url = URL.createObjectURL(await response.blob());
  const link = el('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * The page's frame: the signed-in role's header and sign-out, or back to sign-in.
 * Returns the caller, or null when the key's role does not match the page.
 */
export function frame(...roles) {
  const who = caller();
  if (!sessionStorage.getItem(KEY) || !who) {
    location.assign('index.html');
    return null;
  }
  const nav = document.querySelector('.who');
  nav.replaceChildren(
    el('span', {}, who.tenantId ? `${who.role} · ${who.tenantId}` : who.role),
    el('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
  if (!roles.includes(who.role)) {
    main().replaceChildren(el('p', { class: 'empty', role: 'alert' },
      `This page is for ${roles.join(' or ')} keys; you are signed in with a ${who.role} key. `,
      pageForRole[who.role] ? el('a', { href: pageForRole[who.role] }, 'Open your page') : ''));
    return null;
  }
  return who;
}

export const main = () => document.getElementById('main');

/** Runs fn now and then every ms, never overlapping itself, paused while the tab is hidden. */
export function poll(fn, ms) {
  let timer;
  const tick = async () => {
    clearTimeout(timer);
    try {
      if (!document.hidden) await fn();
    } catch (e) {
      console.error(e);
    }
    timer = setTimeout(tick, ms);
  };
  document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
  tick();
  return { now: tick };
}

/** A random Idempotency-Key (getRandomValues works on plain-http pages too, where randomUUID does not). */
export function newKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Builds an element; children are nodes or text (never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Sets the text of the element with this id. */
export function text(id, value) {
  const node = document.getElementById(id);
  if (node && node.textContent !== String(value)) node.textContent = value;
}

/** A table of rows; columns are [key, heading, format?]; an empty list shows the empty message. */
export function table(rows, columns, empty, caption) {
  if (!rows.length) return el('p', { class: 'empty' }, empty);
  return el('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption },
    el('table', {},
      el('caption', { class: 'visually-hidden' }, caption),
      el('thead', {}, el('tr', {}, columns.map(([key, heading]) =>
        el('th', { scope: 'col', class: typeof (typeof key === 'function' ? key(rows[0]) : rows[0][key]) === 'number' ? 'num' : null }, heading)))),
      el('tbody', {}, rows.map((row) => el('tr', {}, columns.map(([key, , format]) => {
        const value = typeof key === 'function' ? key(row) : row[key];
        const shown = format ? format(value, row) : value ?? '';
        return el('td', { class: typeof value === 'number' ? 'num' : null }, shown);
      }))))));
}

/**
 * The caller's webhook endpoints (a tenant's own; an operator's, the platform-wide ones), each with its latest
 * deliveries: status, attempts, the receiver's last answer, the next try.
 */
export async function renderWebhooks(host) {
  const listed = await api('/v1/webhooks/endpoints');
  if (!listed.ok) {
    host.replaceChildren(el('p', { class: 'error' }, `Could not load the webhook endpoints: ${await problemText(listed)}`));
    return;
  }
  const endpoints = await listed.json();
  if (!endpoints.length) {
    host.replaceChildren(el('p', { class: 'empty' }, 'No webhook endpoints. POST /v1/webhooks/endpoints registers one (docs/webhooks.md).'));
    return;
  }
  const logs = await Promise.all(endpoints.map((e) => api(`/v1/webhooks/endpoints/${encodeURIComponent(e.id)}/deliveries`).then((r) => (r.ok ? r.json() : []))));
  const answer = (a) => (a ? (a.statusCode ? `${a.statusCode}` : a.error ?? '') : '–');
  const badge = (status) => el('span', { class: `badge ${status}` }, status);
  host.replaceChildren(...endpoints.map((e, i) => el('div', { class: 'spaced' },
    el('h3', {}, e.url, ' ', badge(e.enabled ? 'Enabled' : 'Disabled')),
    el('p', { class: 'meta' }, `${e.id} · ${e.eventTypes.join(', ')}`),
    table(logs[i], [
      ['eventType', 'Event'], ['messageId', 'Message id'], ['status', 'Status', badge],
      [(d) => d.attempts.length, 'Attempts'], [(d) => d.attempts.at(-1), 'Last answer', answer],
      ['nextAttemptAt', 'Next attempt', time],
    ], 'Nothing delivered yet.', `Deliveries to ${e.url}`))));
}

/** Columns for rows of unknown shape (APIs built in parallel): every scalar property, in order. */
export function columnsOf(rows) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => rows.every((r) => r[k] === null || typeof r[k] !== 'object'));
  return keys.map((k) => [k, heading(k), moneyKey.test(k) ? money : undefined]);
}

/**
 * An invoice's or a draft's lines as a reader wants them; unit prices keep their sub-cent digits (spillover is priced
 * per 1M tokens). Compact (for a half-width card) leaves out the line numbers and unit prices.
 */
export function linesTable(lines, currency, empty, caption, { compact = false } = {}) {
  const price = (v) => `${new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 6 }).format(v)} ${currency}`;
  const quantity = (q, l) => `${new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 }).format(q)} ${l.unit}`;
  return el('div', { class: 'lines' }, table(lines, [
    ...(compact ? [] : [['line', 'Line']]),
    ['description', 'Description'], ['quantity', 'Quantity', quantity],
    ...(compact ? [] : [['unitPrice', 'Unit price', price]]),
    ['amount', 'Amount', (v) => money(v, { currency })],
  ], empty, caption));
}

/** Property names that hold amounts of money (the finance and invoicing APIs are built in parallel; names vary). */
export const moneyKey = /amount|total|price|tax|revenue|^net$|gross|credited|balance|provisioned|reservations|spillover|adjustments|invoiced|subtotal/i;

export const heading = (camel) => camel.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
export const fmt = (n) => (n === null || n === undefined ? '–' : Math.abs(n) >= 100 ? integer.format(n) : decimal.format(n));
export const pct = (fraction) => (fraction === null || fraction === undefined ? '–' : `${decimal.format(fraction * 100)} %`);
export const money = (n, row) => (typeof n === 'number' ? new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n) + (row?.currency ? ` ${row.currency}` : '') : n ?? '');
export const time = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' }) : '');

/** yyyy-MM of a date (UTC), and of the month n months before. */
export const monthOf = (date = new Date(), back = 0) => {
  const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() - back, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
};

/** Chart.js defaults shared by the pages: no animation on live updates, readable fonts, one palette. */
export const palette = { prompt: '#2563eb', cached: '#93c5fd', output: '#d946ef', weighted: '#0d9488', rate: '#ea580c', util: '#7c3aed', throttle: 'rgba(220, 38, 38, 0.22)', ptu: '#0f766e', sold: '#2563eb', free: '#cbd5e1' };
export const seriesColors = ['#2563eb', '#d946ef', '#0d9488', '#ea580c', '#7c3aed', '#ca8a04', '#db2777', '#475569'];

export function chartDefaults() {
  const Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = '#334155';
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.animation = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  Chart.defaults.plugins.tooltip.mode = 'index';
  Chart.defaults.plugins.tooltip.intersect = false;
  return Chart;
}
