// The customer's page: one deployment's last hour, minute by minute, refreshed every few seconds; resize; invoice draft.
import { api, chartDefaults, el, fmt, frame, linesTable, monthOf, money, palette, pct, poll, problemText, table, text } from './app.js';

const REFRESH_MS = 3000;
const WINDOWS = { 60: 'Last hour', 360: 'Last 6 hours', 1440: 'Last 24 hours' };

const who = frame('Tenant');
if (who) start();

async function start() {
  const Chart = chartDefaults();
  const [listed, catalog] = await Promise.all([api('/v1/deployments'), api('/v1/models')]);
  const deployments = listed.ok ? await listed.json() : [];
  const models = Object.fromEntries((catalog.ok ? await catalog.json() : []).map((m) => [m.name, m]));
  const wanted = new URLSearchParams(location.search).get('deployment') ?? deployments.find((d) => d.status !== 'Released')?.id ?? deployments[0]?.id;

  document.getElementById('deployments').replaceChildren(...deployments.map((d) =>
    el('li', {}, el('a', { href: `?deployment=${encodeURIComponent(d.id)}`, 'aria-current': d.id === wanted ? 'page' : null },
      `${d.name} · ${d.model} · ${fmt(d.ptu)} PTU`, d.status === 'Released' ? ' (released)' : ''))));
  const host = document.getElementById('deployment');
  if (!wanted) {
    host.replaceChildren(el('p', { class: 'empty' }, 'You have no deployments yet. Buy one with POST /v1/deployments.'));
    return;
  }

  // The API answers 404 alike for a deployment that does not exist and one of another tenant.
  const first = await api(`/v1/deployments/${encodeURIComponent(wanted)}`);
  if (!first.ok) {
    host.replaceChildren(el('p', { class: 'empty', role: 'alert', id: 'not-found' },
      first.status === 404 ? `No deployment '${wanted}' in your account.` : `Could not load deployment '${wanted}': ${await problemText(first)}`));
    return;
  }
  host.replaceChildren(document.getElementById('deployment-view').content.cloneNode(true));
  const view = { deployment: await first.json(), etag: first.headers.get('ETag') };
  const model = models[view.deployment.model];
  const charts = makeCharts(Chart);
  const windowSelect = document.getElementById('window');
  windowSelect.replaceChildren(...Object.entries(WINDOWS).map(([minutes, label]) => el('option', { value: minutes }, label)));
  setupResize(view, model);
  setupEstimate(view);

  const refresh = async () => {
    const to = new Date();
    // No point charting time before the deployment existed: a young deployment gets a shorter window (15 minutes at least).
    const age = Math.ceil((to.getTime() - Date.parse(view.deployment.createdAt)) / 60_000) + 1;
    const minutes = Math.min(Number(windowSelect.value), Math.max(15, age));
    const from = new Date(to.getTime() - (minutes - 1) * 60_000);
    const [d, usage] = await Promise.all([
      api(`/v1/deployments/${encodeURIComponent(wanted)}`),
      api(`/v1/deployments/${encodeURIComponent(wanted)}/usage?from=${from.toISOString()}&to=${to.toISOString()}`),
    ]);
    if (!d.ok || !usage.ok) return;
    view.deployment = await d.json();
    view.etag = d.headers.get('ETag');
    const series = minuteSeries(await usage.json(), view.deployment, model, to, minutes);
    renderDeployment(view.deployment);
    renderCharts(charts, series);
    text('updated', `live · updated ${to.toLocaleTimeString()}`);
    document.getElementById('updated').hidden = false;
  };
  view.refresh = poll(refresh, REFRESH_MS).now;
  windowSelect.addEventListener('change', view.refresh);
  poll(() => Promise.all([loadDraft(), loadInvoices()]), 30_000);
}

/**
 * The window as one slot per minute: minutes without usage are zero (none before the deployment existed); the purchased
 * rate carries forward from the minutes that recorded it and ends at today's limit.
 */
function minuteSeries(rows, deployment, model, now, minutes) {
  const byMinute = new Map(rows.map((r) => [Date.parse(r.minute), r]));
  const last = Math.floor(now.getTime() / 60_000) * 60_000;
  const created = Math.floor(Date.parse(deployment.createdAt) / 60_000) * 60_000;
  const firstRate = rows.find((r) => r.tokensPerMinute > 0)?.tokensPerMinute ?? deployment.admission.tokensPerMinute;
  const s = { labels: [], rows: [], prompt: [], cached: [], output: [], weighted: [], rate: [], util: [], throttled: [], ptu: [] };
  let rate = firstRate;
  for (let i = minutes - 1; i >= 0; i--) {
    const minute = last - i * 60_000;
    const row = byMinute.get(minute);
    const live = i === 0;
    if (row?.tokensPerMinute > 0) rate = row.tokensPerMinute;
    if (live) rate = deployment.admission.tokensPerMinute; // a resize shows at once, before usage at the new rate arrives
    const existed = minute >= created;
    s.labels.push(new Date(minute).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    s.rows.push(row ? { ...row, at: s.labels.at(-1) } : null);
    const zero = existed ? 0 : null;
    s.prompt.push(row ? row.promptTokens - row.cachedTokens : zero);
    s.cached.push(row?.cachedTokens ?? zero);
    s.output.push(row?.outputTokens ?? zero);
    s.weighted.push(row?.weightedTokens ?? zero);
    s.rate.push(existed ? rate : null);
    s.ptu.push(existed ? (live ? deployment.ptu : Math.round((rate / model.inputTokensPerMinutePerPtu) * 1e4) / 1e4) : null);
    s.util.push(row ? Math.round(row.maxUtilization * 1000) / 10 : zero);
    s.throttled.push(row?.throttles > 0 || (live && deployment.bucket.throttled) ? 1 : 0);
  }
  return s;
}

function makeCharts(Chart) {
  const x = { stacked: true, ticks: { maxTicksLimit: 7, maxRotation: 0 }, grid: { display: false } };
  const y = (title, extra = {}) => ({ beginAtZero: true, title: { display: true, text: title }, ...extra });
  // Points are drawn so that a single minute of data (a new deployment) is visible at all.
  const line = (label, color, more = {}) => ({ type: 'line', label, data: [], borderColor: color, backgroundColor: color, pointRadius: 2, borderWidth: 2, tension: 0.2, ...more });
  const bar = (label, color, stack, more = {}) => ({ type: 'bar', label, data: [], backgroundColor: color, stack, barPercentage: 1, categoryPercentage: 0.9, ...more });
  const make = (id, datasets, scales) => new Chart(document.getElementById(id), { data: { labels: [], datasets }, options: { scales: { x, ...scales } } });
  return {
    tokens: make('c-tokens', [
      bar('Prompt', palette.prompt, 'prompt'),
      bar('Prompt, cached', palette.cached, 'prompt'),
      bar('Generated', palette.output, 'output'),
    ], { y: y('tokens / min', { stacked: true }) }),
    weighted: make('c-weighted', [
      bar('Weighted tokens', 'rgba(13, 148, 136, 0.75)', 'weighted', { order: 2 }),
      line('Purchased rate', palette.rate, { stepped: 'middle', borderWidth: 3, order: 1 }),
    ], { y: y('weighted tokens / min') }),
    util: make('c-util', [
      line('Peak utilization', palette.util, { fill: 'origin', backgroundColor: 'rgba(124, 58, 237, 0.10)' }),
      line('Limit', '#94a3b8', { borderDash: [6, 4], borderWidth: 1, pointRadius: 0 }),
      bar('Throttled', palette.throttle, 'throttle', { yAxisID: 'throttle', categoryPercentage: 1 }),
    ], { y: y('%', { suggestedMax: 110 }), throttle: { display: false, min: 0, max: 1 } }),
    ptu: make('c-ptu', [
      line('PTU', palette.ptu, { stepped: 'middle', fill: 'origin', backgroundColor: 'rgba(15, 118, 110, 0.12)' }),
    ], { y: y('PTU') }),
  };
}

function renderCharts(charts, s) {
  const set = (chart, ...data) => {
    chart.data.labels = s.labels;
    data.forEach((d, i) => { chart.data.datasets[i].data = d; });
    chart.update('none');
  };
  const dense = s.labels.length > 120;
  for (const chart of Object.values(charts))
    for (const d of chart.data.datasets) if (d.type === 'line' && d.label !== 'Limit') d.pointRadius = dense ? 0 : 2;
  set(charts.tokens, s.prompt, s.cached, s.output);
  set(charts.weighted, s.weighted, s.rate);
  set(charts.util, s.util, s.labels.map(() => 100), s.throttled);
  set(charts.ptu, s.ptu);

  const rows = s.rows.filter(Boolean).reverse();
  const none = 'No usage in the last hour.';
  document.getElementById('t-tokens').replaceChildren(table(rows, [['at', 'Minute'], ['promptTokens', 'Prompt', fmt], ['cachedTokens', 'Of which cached', fmt], ['outputTokens', 'Generated', fmt]], none, 'Tokens per minute'));
  document.getElementById('t-weighted').replaceChildren(table(rows, [['at', 'Minute'], ['weightedTokens', 'Weighted', fmt], ['tokensPerMinute', 'Purchased rate', fmt]], none, 'Weighted tokens per minute'));
  document.getElementById('t-util').replaceChildren(table(rows, [['at', 'Minute'], ['maxUtilization', 'Peak utilization', pct], ['throttles', 'Throttled', (n) => (n > 0 ? 'yes' : 'no')]], none, 'Utilization per minute'));
  document.getElementById('t-ptu').replaceChildren(table(s.labels.map((at, i) => ({ at, ptu: s.ptu[i] })).filter((r) => r.ptu !== null).reverse().slice(0, 10),
    [['at', 'Minute'], ['ptu', 'PTU', fmt]], 'No data.', 'PTU per minute'));
}

function renderDeployment(d) {
  text('d-title', d.name);
  text('d-meta', `${d.model} · ${d.region} · ${d.type}${d.spillover ? ' · spillover on' : ''} · id ${d.id}`);
  text('k-ptu', `${fmt(d.ptu)} PTU`);
  text('k-rate', fmt(d.admission.tokensPerMinute));
  text('k-util', pct(d.bucket.utilization));
  document.getElementById('k-util-box').classList.toggle('bad', d.bucket.utilization >= 1);
  const state = d.status === 'Released' ? 'Released' : d.bucket.throttled ? 'Throttled' : 'Open';
  const badge = document.getElementById('k-state');
  if (badge.textContent !== state) badge.replaceChildren(el('span', { class: `badge ${state}` }, state));
  text('k-records', fmt(d.bucket.meteredRecords));
}

function setupResize(view, model) {
  const input = document.getElementById('ptu');
  input.min = model.minimumPtu;
  input.step = model.ptuIncrement;
  input.value = view.deployment.ptu;
  const price = Object.entries(model.prices)[0];
  text('ptu-help', `From ${model.minimumPtu} PTU in steps of ${model.ptuIncrement}; 1 PTU admits ${fmt(model.inputTokensPerMinutePerPtu)} weighted tokens/min` +
    (price ? ` and costs ${price[1].perPtuHour} ${price[0]} per hour.` : '.'));
  document.getElementById('resize').addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = event.submitter;
    text('resize-error', '');
    text('resize-status', '');
    button.disabled = true;
    try {
      const response = await api(`/v1/deployments/${encodeURIComponent(view.deployment.id)}/resize`,
        { method: 'POST', body: { ptu: Number(input.value) }, headers: { 'If-Match': view.etag } });
      if (response.ok) {
        view.deployment = await response.json();
        view.etag = response.headers.get('ETag');
        text('resize-status', `Resized to ${fmt(view.deployment.ptu)} PTU: ${fmt(view.deployment.admission.tokensPerMinute)} weighted tokens per minute.`);
      } else if (response.status === 412) {
        text('resize-error', 'This deployment changed since the page loaded it. The latest is shown now; check it and resize again.');
      } else {
        text('resize-error', await problemText(response));
      }
      await view.refresh();
    } finally {
      button.disabled = false;
    }
  });
}

function setupEstimate(view) {
  const value = (id) => Number(document.getElementById(id).value);
  document.getElementById('estimate').addEventListener('submit', async (event) => {
    event.preventDefault();
    text('estimate-error', '');
    const response = await api('/v1/capacity/estimate', {
      method: 'POST',
      body: { model: view.deployment.model, requestsPerMinute: value('e-rpm'), promptTokens: value('e-prompt'), outputTokens: value('e-output'), cacheHitRate: value('e-cache') / 100 },
    });
    const answer = document.getElementById('estimate-answer');
    if (!response.ok) {
      answer.replaceChildren();
      text('estimate-error', await problemText(response));
      return;
    }
    const e = await response.json();
    answer.replaceChildren(el('p', { class: 'answer' },
      'This workload needs ', el('strong', {}, `${fmt(e.ptu)} PTU`), ` of ${e.model}: ${fmt(e.weightedTokensPerMinute)} weighted tokens/min at peak, `,
      `${pct(e.utilizationAtPeak)} of the ${fmt(e.tokensPerMinute)} that buys. `,
      el('button', { type: 'button', class: 'link', onclick: () => { const input = document.getElementById('ptu'); input.value = e.ptu; input.focus(); } }, `Use ${fmt(e.ptu)} PTU in the resize form`)));
  });
}

/** The invoicing API may not be deployed yet: 404 reads as "no draft yet", never as a failure. */
async function loadDraft() {
  const month = monthOf();
  const host = document.getElementById('invoice');
  const response = await api(`/v1/invoices/draft?month=${month}`);
  if (response.status === 404) {
    const detail = (await response.json().catch(() => ({}))).detail;
    host.replaceChildren(el('p', { class: 'empty', id: 'no-draft' }, `No draft yet for ${month}.`, detail ? el('br') : null, detail ? el('small', {}, detail) : null));
    return;
  }
  if (!response.ok) {
    host.replaceChildren(el('p', { class: 'error' }, `Could not load the draft: ${await problemText(response)}`));
    return;
  }
  const draft = await response.json();
  const lines = Array.isArray(draft.lines) ? draft.lines : [];
  const total = draft.total ?? draft.totalAmount ?? draft.amount;
  host.replaceChildren(
    el('p', { class: 'meta' }, `${draft.month ?? month}${draft.status ? ` · ${draft.status}` : ''}`),
    el('p', { class: 'kpi-inline' }, 'Total so far: ', el('strong', { id: 'draft-total' }, money(total, draft))),
    linesTable(lines, draft.currency, 'No lines yet.', 'Invoice draft lines', { compact: true }));
}

/** The tenant's issued invoices, newest first, each linking to its page. */
async function loadInvoices() {
  const host = document.getElementById('invoices');
  const response = await api('/v1/invoices');
  if (!response.ok) {
    host.replaceChildren(el('p', { class: 'error' }, `Could not load your invoices: ${await problemText(response)}`));
    return;
  }
  const invoices = (await response.json()).reverse();
  host.replaceChildren(table(invoices, [
    ['documentNumber', 'Invoice', (number, i) => el('a', { href: `invoice.html?id=${encodeURIComponent(i.id)}` }, number)],
    ['month', 'Month'], ['total', 'Total', money], ['balance', 'Balance', money],
  ], 'No invoice issued yet.', 'Issued invoices'));
}
