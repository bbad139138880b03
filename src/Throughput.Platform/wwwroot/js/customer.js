// The customer's page: one deployment's last hour, minute by minute, refreshed every few seconds; resize, spillover and
// release; buying a new deployment (calculator, regions with room, price in the account's currency); invoice draft;
// alerts (set and removed here); the webhook endpoints' delivery logs.
import { api, chartDefaults, download, el, fmt, frame, linesTable, monthOf, money, newKey, palette, pct, poll, problemText, renderWebhooks, table, text, time } from './app.js';

const REFRESH_MS = 3000;
const WINDOWS = { 60: 'Last hour', 360: 'Last 6 hours', 1440: 'Last 24 hours' };

const who = frame('Tenant');
if (who) start();

async function start() {
  const Chart = chartDefaults();
  const [listed, catalog] = await Promise.all([api('/v1/deployments'), api('/v1/models')]);
  const deployments = listed.ok ? await listed.json() : [];
  const modelList = catalog.ok ? await catalog.json() : [];
  const models = Object.fromEntries(modelList.map((m) => [m.name, m]));
  const wanted = new URLSearchParams(location.search).get('deployment') ?? deployments.find((d) => d.status !== 'Released')?.id ?? deployments[0]?.id;

  renderTabs(deployments, wanted);
  const host = document.getElementById('deployment');
  const open = deployments.find((d) => d.id === wanted);
  const buy = setupBuy(modelList, open?.model);
  poll(loadAlerts, 10_000);
  poll(() => renderWebhooks(document.getElementById('webhooks')), 10_000);
  setupAlertForm(deployments);
  if (!wanted) {
    host.replaceChildren(el('p', { class: 'empty' }, 'You have no deployments yet. Size your workload with the calculator below and buy one.'));
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
  buy.onResizeTarget(view);
  setupResize(view, model);
  setupSpillover(view);
  setupRelease(view);

  const refresh = async () => {
    const to = new Date();
    // No point charting time before the deployment existed: a young deployment gets a shorter window (15 minutes at least).
    const age = Math.ceil((to.getTime() - Date.parse(view.deployment.createdAt)) / 60_000) + 1;
    const minutes = Math.min(Number(windowSelect.value), Math.max(15, age));
    const from = new Date(to.getTime() - (minutes - 1) * 60_000);
    const [d, usage, all] = await Promise.all([
      api(`/v1/deployments/${encodeURIComponent(wanted)}`),
      api(`/v1/deployments/${encodeURIComponent(wanted)}/usage?from=${from.toISOString()}&to=${to.toISOString()}`),
      api('/v1/deployments'),
    ]);
    // The tabs follow too: a release here, or a purchase or resize from another tab, shows without a reload.
    if (all.ok) renderTabs(await all.json(), wanted);
    if (!d.ok || !usage.ok) return;
    view.deployment = await d.json();
    view.etag = d.headers.get('ETag');
    const series = minuteSeries(await usage.json(), view.deployment, model, to, minutes);
    renderDeployment(view, series);
    renderCharts(charts, series);
    text('updated', `live · updated ${to.toLocaleTimeString()}`);
    document.getElementById('updated').hidden = false;
  };
  view.refresh = poll(refresh, REFRESH_MS).now;
  windowSelect.addEventListener('change', view.refresh);
  poll(() => Promise.all([loadDraft(), loadInvoices()]), 30_000);
  if (view.deployment.adapters) setupAdapters(view.deployment);
}

/** An adapter deployment's or set's usage this month per adapter: the busiest ones on the page, every one in the CSV. */
function setupAdapters(deployment) {
  const SHOWN = 20;
  const path = `/v1/deployments/${encodeURIComponent(deployment.id)}/usage/adapters?month=${monthOf()}`;
  const caps = deployment.adapters.caps ?? {};
  const count = Object.keys(caps).length;
  document.getElementById('adapters-card').hidden = false;
  document.getElementById('adapters-csv').addEventListener('click', async () => {
    text('adapters-error', '');
    try {
      await download(`${path}&format=csv`, `adapter-usage-${deployment.id}-${monthOf()}.csv`);
    } catch (e) {
      text('adapters-error', `Could not download: ${e.message}`);
    }
  });
  poll(async () => {
    const response = await api(path);
    if (!response.ok) return;
    const rows = (await response.json()).sort((a, b) => b.weightedTokens - a.weightedTokens);
    text('adapters-meta', `${monthOf()} · ${fmt(count)} adapter${count === 1 ? '' : 's'}${rows.length > SHOWN ? ` · the ${SHOWN} busiest shown` : ''}`);
    document.getElementById('adapters').replaceChildren(table(rows.slice(0, SHOWN), [
      ['adapterId', 'Adapter'], ['records', 'Requests', fmt], ['promptTokens', 'Prompt tokens', fmt], ['cachedTokens', 'Cached', fmt],
      ['outputTokens', 'Generated', fmt], ['weightedTokens', 'Weighted tokens', fmt],
      [(r) => caps[r.adapterId] ?? null, 'Cap (share of the rate)', (cap) => (cap === null ? 'none' : pct(cap))],
    ], 'No adapter has served a request this month yet.', 'Usage per adapter this month'));
  }, 30_000);
}

/** One tab per deployment of the account, the open one marked; redrawn only when what it shows changed. */
function renderTabs(deployments, wanted) {
  const tabs = deployments.map((d) => ({ id: d.id, label: `${d.name} · ${d.model} · ${d.status === 'Released' ? 'released' : `${fmt(d.ptu)} PTU`}` }));
  const host = document.getElementById('deployments');
  const shown = JSON.stringify(tabs);
  if (host.dataset.shown === shown) return;
  host.dataset.shown = shown;
  host.replaceChildren(...tabs.map((t) =>
    el('li', {}, el('a', { href: `?deployment=${encodeURIComponent(t.id)}`, 'aria-current': t.id === wanted ? 'page' : null }, t.label))));
}

/** Where the account can buy a model, and what a PTU of it costs in the account's currency. */
async function capacityFor(model, ptu) {
  const query = new URLSearchParams({ model });
  if (ptu > 0) query.set('ptu', ptu);
  const response = await api(`/v1/capacity/regions?${query}`);
  return response.ok ? response.json() : Promise.reject(new Error(await problemText(response)));
}

const amount = (n, currency) => `${new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 4 }).format(n)} ${currency}`;
const hourly = (ptu, price) => Math.round(ptu * price * 1e6) / 1e6;
const minuteLabel = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/**
 * The window as one slot per minute: minutes without usage are zero (none before the deployment existed or after its
 * release); the purchased rate carries forward from the minutes that recorded it and ends at today's limit. A minute is
 * partial when the deployment held its rate for only part of it: the current minute, and those of its purchase, release and
 * resizes (a resize shows as the rate changing between minutes with usage; both minutes are marked, as it fell between them).
 */
function minuteSeries(rows, deployment, model, now, minutes) {
  const byMinute = new Map(rows.map((r) => [Date.parse(r.minute), r]));
  const last = Math.floor(now.getTime() / 60_000) * 60_000;
  const floor = (iso) => Math.floor(Date.parse(iso) / 60_000) * 60_000;
  const created = floor(deployment.createdAt);
  const released = deployment.releasedAt ? floor(deployment.releasedAt) : null;
  const partial = new Set([created, ...(released === null ? [last] : [released])]);
  const rated = rows.filter((r) => r.tokensPerMinute > 0);
  rated.forEach((r, i) => {
    if (i > 0 && r.tokensPerMinute !== rated[i - 1].tokensPerMinute) partial.add(Date.parse(r.minute)).add(Date.parse(rated[i - 1].minute));
  });
  const firstRate = rated[0]?.tokensPerMinute ?? deployment.admission.tokensPerMinute;
  const s = { labels: [], minutes: [], rows: [], prompt: [], cached: [], output: [], weighted: [], rate: [], served: [], partial: [], util: [], throttled: [], ptu: [] };
  let rate = firstRate;
  for (let i = minutes - 1; i >= 0; i--) {
    const minute = last - i * 60_000;
    const row = byMinute.get(minute);
    const live = i === 0 && released === null;
    if (row?.tokensPerMinute > 0) rate = row.tokensPerMinute;
    if (live) rate = deployment.admission.tokensPerMinute; // a resize shows at once, before usage at the new rate arrives
    const existed = minute >= created && (released === null || minute <= released);
    const weighted = row?.weightedTokens ?? (existed ? 0 : null);
    const isPartial = existed && partial.has(minute);
    s.labels.push(minuteLabel(minute));
    s.minutes.push(minute);
    s.partial.push(isPartial);
    const served = existed && rate > 0 ? Math.round((weighted / rate) * 1000) / 10 : null;
    s.served.push(served);
    s.rows.push(row ? { ...row, at: s.labels.at(-1) + (isPartial ? ' (partial)' : ''), served } : null);
    const zero = existed ? 0 : null;
    s.prompt.push(row ? row.promptTokens - row.cachedTokens : zero);
    s.cached.push(row?.cachedTokens ?? zero);
    s.output.push(row?.outputTokens ?? zero);
    s.weighted.push(weighted);
    s.rate.push(existed ? rate : null);
    s.ptu.push(existed ? (live ? deployment.ptu : Math.round((rate / model.inputTokensPerMinutePerPtu) * 1e4) / 1e4) : null);
    s.util.push(row ? Math.round(row.maxUtilization * 1000) / 10 : zero);
    s.throttled.push(row?.throttles > 0 || (live && deployment.bucket.throttled) ? 1 : 0);
  }
  return s;
}

// Partial minutes are drawn pale: a minute the deployment held its rate for only in part is not under-delivery.
const FULL = { weighted: 'rgba(13, 148, 136, 0.75)', served: 'rgba(124, 58, 237, 0.55)' };
const PARTIAL = { weighted: 'rgba(13, 148, 136, 0.25)', served: 'rgba(124, 58, 237, 0.18)' };

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
      bar('Weighted tokens', FULL.weighted, 'weighted', { order: 2 }),
      line('Purchased rate', palette.rate, { stepped: 'middle', borderWidth: 3, order: 1 }),
    ], { y: y('weighted tokens / min') }),
    util: make('c-util', [
      bar('Served ÷ purchased', FULL.served, 'served', { order: 3, grouped: false }),
      line('Peak bucket level', palette.util, { borderWidth: 1, order: 1 }),
      bar('Throttled', palette.throttle, 'throttle', { yAxisID: 'throttle', categoryPercentage: 1, order: 4, grouped: false }),
      line('Limit', '#94a3b8', { borderDash: [6, 4], borderWidth: 1, pointRadius: 0, order: 2 }),
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
  charts.weighted.data.datasets[0].backgroundColor = s.partial.map((p) => (p ? PARTIAL.weighted : FULL.weighted));
  charts.util.data.datasets[0].backgroundColor = s.partial.map((p) => (p ? PARTIAL.served : FULL.served));
  set(charts.tokens, s.prompt, s.cached, s.output);
  set(charts.weighted, s.weighted, s.rate);
  set(charts.util, s.served, s.util, s.throttled, s.labels.map(() => 100));
  set(charts.ptu, s.ptu);

  const rows = s.rows.filter(Boolean).reverse();
  const none = 'No usage in this window.';
  const percent = (n) => (n === null ? '–' : `${fmt(n)} %`);
  document.getElementById('t-tokens').replaceChildren(table(rows, [['at', 'Minute'], ['promptTokens', 'Prompt', fmt], ['cachedTokens', 'Of which cached', fmt], ['outputTokens', 'Generated', fmt]], none, 'Tokens per minute'));
  document.getElementById('t-weighted').replaceChildren(table(rows, [['at', 'Minute'], ['weightedTokens', 'Weighted', fmt], ['tokensPerMinute', 'Purchased rate', fmt]], none, 'Weighted tokens per minute'));
  document.getElementById('t-util').replaceChildren(table(rows, [['at', 'Minute'], ['served', 'Served ÷ purchased', percent], ['maxUtilization', 'Peak bucket level', pct], ['throttles', 'Throttled', (n) => (n > 0 ? 'yes' : 'no')]], none, 'Utilization per minute'));
  document.getElementById('t-ptu').replaceChildren(table(s.labels.map((at, i) => ({ at, ptu: s.ptu[i] })).filter((r) => r.ptu !== null).reverse().slice(0, 10),
    [['at', 'Minute'], ['ptu', 'PTU', fmt]], 'No data.', 'PTU per minute'));
}

function renderDeployment(view, s) {
  const d = view.deployment;
  const released = d.status === 'Released';
  text('d-title', d.name);
  // Where Forge placed it, when that is not simply the region it was bought in.
  const placed = released || (d.placement.length === 1 && d.placement[0].region === d.region && !d.degraded) ? ''
    : ` · placed in ${d.placement.map((p) => `${p.region} ${fmt(p.ptu)} PTU`).join(', ') || 'no region'}${d.degraded ? `, ${fmt(d.unplacedPtu)} PTU without room` : ''}`;
  text('d-meta', `${d.model} · ${d.region} · ${d.type}${placed}${d.spillover && !released ? ' · spillover on' : ''} · id ${d.id}`);
  text('k-ptu', released ? 'Released' : `${fmt(d.ptu)} PTU`);
  text('k-rate', released ? '–' : fmt(d.admission.tokensPerMinute));
  // The last minute the deployment held its rate throughout: the current one is still filling.
  const full = s.served.findLastIndex((v, i) => v !== null && !s.partial[i]);
  text('k-served', full < 0 ? 'no full minute yet' : `${fmt(s.served[full])} % at ${s.labels[full]}`);
  text('k-bucket', released ? '–' : pct(d.bucket.utilization));
  document.getElementById('k-bucket-box').classList.toggle('bad', !released && d.bucket.utilization >= 1);
  const state = released ? 'Released' : d.bucket.throttled ? 'Throttled' : d.degraded ? 'Degraded' : 'Open';
  const badge = document.getElementById('k-state');
  if (badge.textContent !== state) badge.replaceChildren(el('span', { class: `badge ${state}` }, state));
  text('k-records', fmt(d.bucket.meteredRecords));
  document.getElementById('manage').hidden = released;
  const note = document.getElementById('released-note');
  note.hidden = !released;
  if (released) text('released-note', `Released ${time(d.releasedAt)}: its PTUs went back to the pool and billing for them stopped then. The charts keep its history.`);
  const spillover = document.getElementById('spillover');
  if (!spillover.disabled) spillover.checked = d.spillover;
}

function setupResize(view, model) {
  const input = document.getElementById('ptu');
  input.min = model.minimumPtu;
  input.step = model.ptuIncrement;
  input.value = view.deployment.ptu;
  const help = `From ${model.minimumPtu} PTU in steps of ${model.ptuIncrement}; 1 PTU admits ${fmt(model.inputTokensPerMinutePerPtu)} weighted tokens/min`;
  // The price fixed when the deployment was bought, which is what it is billed at; today's catalog price may differ.
  const price = view.deployment.prices?.perPtuHour;
  text('ptu-help', price === undefined ? `${help}.` : `${help} and costs ${amount(price, view.deployment.currency)} per hour (this deployment's price, fixed at purchase).`);
  document.getElementById('resize').addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = event.submitter;
    text('resize-error', '');
    text('resize-status', '');
    button.disabled = true;
    try {
      const problem = await changeDeployment(view, 'resize', { method: 'POST', body: { ptu: Number(input.value) }, headers: { 'If-Match': view.etag } }, 'resize');
      if (problem) text('resize-error', problem);
      else text('resize-status', `Resized to ${fmt(view.deployment.ptu)} PTU: ${fmt(view.deployment.admission.tokensPerMinute)} weighted tokens per minute.`);
      await view.refresh();
    } finally {
      button.disabled = false;
    }
  });
}

/** A change to the open deployment: on success the page holds the answer and its ETag; otherwise the message to show. */
async function changeDeployment(view, action, request, verb) {
  const response = await api(`/v1/deployments/${encodeURIComponent(view.deployment.id)}/${action}`, request);
  if (response.ok) {
    view.deployment = await response.json();
    view.etag = response.headers.get('ETag');
    return null;
  }
  if (response.status === 412) return `This deployment changed since the page loaded it. The latest is shown now; check it and ${verb} again.`;
  if (response.status === 409 && /exhausted/.test(await response.clone().text()))
    return `There are not enough free PTUs of ${view.deployment.model} in ${view.deployment.region} for that size; try a smaller one.`;
  return problemText(response);
}

function setupSpillover(view) {
  const box = document.getElementById('spillover');
  box.checked = view.deployment.spillover;
  const p = view.deployment.prices;
  const currency = view.deployment.currency;
  if (p) text('spillover-help', `Requests above the purchased rate are served instead of throttled, billed per 1M tokens: ` +
    `${amount(p.spilloverInputPerMillion, currency)} prompt, ${amount(p.spilloverCachedPerMillion, currency)} cached prompt, ${amount(p.spilloverOutputPerMillion, currency)} generated ` +
    '(this deployment\'s prices, fixed at purchase).');
  box.addEventListener('change', async () => {
    text('spillover-error', '');
    text('spillover-status', '');
    const enabled = box.checked;
    box.disabled = true;
    try {
      const problem = await changeDeployment(view, 'spillover', { method: 'PUT', body: { enabled } }, 'change spillover');
      if (problem) {
        box.checked = !enabled;
        text('spillover-error', problem);
      } else {
        text('spillover-status', view.deployment.spillover
          ? 'Spillover is on: requests above the purchased rate are served and billed per token.'
          : 'Spillover is off: requests above the purchased rate are throttled (asked to retry later).');
      }
    } finally {
      box.disabled = false;
    }
    await view.refresh();
  });
}

function setupRelease(view) {
  const dialog = document.getElementById('release-dialog');
  const confirm = document.getElementById('release-confirm');
  document.getElementById('release-open').addEventListener('click', () => {
    const d = view.deployment;
    text('release-error', '');
    text('release-question', `Release ${d.name}?`);
    text('release-consequence', `Its ${fmt(d.ptu)} PTU of ${d.model} in ${d.region} go back to the pool and billing for them stops now. This cannot be undone.`);
    dialog.showModal();
  });
  confirm.addEventListener('click', async () => {
    confirm.disabled = true;
    try {
      const problem = await changeDeployment(view, 'release', { method: 'POST', headers: { 'If-Match': view.etag } }, 'release');
      dialog.close();
      text('release-error', problem ?? '');
      await view.refresh();
    } finally {
      confirm.disabled = false;
    }
  });
}

/**
 * The buy section: the model, the calculator, then the purchase. The region list comes from capacity discovery (regions
 * with room for the amount); the price is the account's. One Idempotency-Key per filled-in form: a retry of the same
 * purchase (a lost answer) buys once, and changing the form makes it a new purchase.
 */
function setupBuy(modelList, preferred) {
  const modelSelect = document.getElementById('b-model');
  const ptu = document.getElementById('b-ptu');
  const region = document.getElementById('b-region');
  const form = document.getElementById('buy');
  const value = (id) => Number(document.getElementById(id).value);
  modelSelect.replaceChildren(...modelList.map((m) => el('option', { value: m.name, selected: m.name === preferred }, m.name)));
  let capacity = null;
  let asked = 0;
  let key = newKey();
  let resizeTarget = null;

  const describe = () => {
    const m = modelList.find((x) => x.name === modelSelect.value);
    if (!m) return;
    ptu.min = m.minimumPtu;
    ptu.step = m.ptuIncrement;
    const price = capacity?.pricePerPtuHour;
    text('b-model-help', `1 PTU admits ${fmt(m.inputTokensPerMinutePerPtu)} weighted tokens/min (a generated token counts as ${fmt(m.outputWeight)})` +
      (capacity ? (price === null ? `; ${m.name} is not sold in ${capacity.currency}, your account's currency.` : ` and costs ${amount(price, capacity.currency)} per hour.`) : '.') +
      ` From ${m.minimumPtu} PTU in steps of ${m.ptuIncrement}.`);
    const n = Number(ptu.value);
    text('b-price', !capacity || price === null ? '' : n > 0
      ? `${fmt(n)} PTU × ${amount(price, capacity.currency)} per PTU-hour = ${amount(hourly(n, price), capacity.currency)} per hour, billed to the second.`
      : `Enter PTUs to see the price: ${amount(price, capacity.currency)} per PTU-hour.`);
  };

  const regions = async () => {
    const call = ++asked;
    const n = Number(ptu.value);
    let answer;
    try {
      answer = await capacityFor(modelSelect.value, n);
    } catch (e) {
      text('b-regions-help', `Could not list regions: ${e.message}`);
      return;
    }
    if (call !== asked) return; // an older answer arriving late
    capacity = answer;
    const open = answer.regions.filter((r) => (n > 0 ? r.fits : r.availablePtu > 0));
    const before = region.value;
    region.replaceChildren(...open.map((r) => el('option', { value: r.region, selected: r.region === before }, `${r.region} · ${fmt(r.availablePtu)} PTU available`)));
    text('b-regions-help', open.length
      ? `${open.length} of ${answer.regions.length} regions have ${n > 0 ? `${fmt(n)} PTU` : 'PTUs'} of ${answer.model} free.`
      : answer.regions.length ? `No region has ${n > 0 ? `${fmt(n)} PTU` : 'any PTUs'} of ${answer.model} free right now${n > 0 ? '; try a smaller amount' : ''}.`
        : `${answer.model} is not offered in any region yet.`);
    describe();
  };

  let typing;
  form.addEventListener('input', () => { key = newKey(); });
  ptu.addEventListener('input', () => { describe(); clearTimeout(typing); typing = setTimeout(regions, 250); });
  modelSelect.addEventListener('change', () => { key = newKey(); text('estimate-answer', ''); regions(); });
  regions();

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = event.submitter;
    text('buy-error', '');
    button.disabled = true;
    try {
      const body = { name: document.getElementById('b-name').value, model: modelSelect.value, region: region.value, type: document.getElementById('b-type').value,
        ptu: Number(ptu.value), spillover: document.getElementById('b-spillover').checked };
      if (!body.region) {
        text('buy-error', 'Pick a region with room for this amount.');
        return;
      }
      const response = await api('/v1/deployments', { method: 'POST', body, headers: { 'Idempotency-Key': key } });
      if (response.ok) {
        const created = await response.json();
        location.assign(`customer.html?deployment=${encodeURIComponent(created.id)}`);
        return;
      }
      if (response.status === 409 && /exhausted|No capacity/.test(await response.clone().text())) {
        text('buy-error', `${body.region} no longer has ${fmt(body.ptu)} PTU of ${body.model} free. The region list is up to date now; pick another region or a smaller amount.`);
        key = newKey();
        await regions();
      } else {
        text('buy-error', await problemText(response));
      }
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById('estimate').addEventListener('submit', async (event) => {
    event.preventDefault();
    text('estimate-error', '');
    const model = modelSelect.value;
    const response = await api('/v1/capacity/estimate', {
      method: 'POST',
      body: { model, requestsPerMinute: value('e-rpm'), promptTokens: value('e-prompt'), outputTokens: value('e-output'), cacheHitRate: value('e-cache') / 100 },
    });
    const answer = document.getElementById('estimate-answer');
    if (!response.ok) {
      answer.replaceChildren();
      text('estimate-error', await problemText(response));
      return;
    }
    const e = await response.json();
    const price = capacity?.model === e.model ? capacity.pricePerPtuHour : null;
    const use = (target, label) => el('button', { type: 'button', class: 'link', onclick: () => {
      target.value = e.ptu;
      target.dispatchEvent(new Event('input', { bubbles: true }));
      target.focus();
    } }, label);
    const resize = resizeTarget?.deployment.model === e.model && resizeTarget.deployment.status !== 'Released';
    answer.replaceChildren(el('p', { class: 'answer' },
      'This workload needs ', el('strong', {}, `${fmt(e.ptu)} PTU`), ` of ${e.model}: ${fmt(e.weightedTokensPerMinute)} weighted tokens/min at peak, `,
      `${pct(e.utilizationAtPeak)} of the ${fmt(e.tokensPerMinute)} that buys`,
      price === null ? '. ' : `, for ${amount(hourly(e.ptu, price), capacity.currency)} per hour. `,
      use(ptu, `Use ${fmt(e.ptu)} PTU to buy`),
      resize ? ' · ' : null,
      resize ? use(document.getElementById('ptu'), `Use ${fmt(e.ptu)} PTU in the resize form`) : null));
  });

  return { onResizeTarget: (view) => { resizeTarget = view; } };
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

/** The answer to a GET of the tenant's own list, or null once the host says why it could not be loaded. */
async function loadList(host, path, what) {
  const response = await api(path);
  if (response.ok) return response.json();
  host.replaceChildren(el('p', { class: 'error' }, `Could not load your ${what}: ${await problemText(response)}`));
  return null;
}

/** The tenant's issued invoices, newest first, each linking to its page. */
async function loadInvoices() {
  const host = document.getElementById('invoices');
  const issued = await loadList(host, '/v1/invoices', 'invoices');
  if (!issued) return;
  const invoices = issued.reverse();
  host.replaceChildren(table(invoices, [
    ['documentNumber', 'Invoice', (number, i) => el('a', { href: `invoice.html?id=${encodeURIComponent(i.id)}` }, number)],
    ['month', 'Month'], ['total', 'Total', money], ['balance', 'Balance', money],
  ], 'No invoice issued yet.', 'Issued invoices'));
}

/** The tenant's alerts: what each watches, its threshold, whether it caps spillover, and the month it is crossed in. */
async function loadAlerts() {
  const host = document.getElementById('alerts');
  const alerts = await loadList(host, '/v1/alerts', 'alerts');
  if (!alerts) return;
  const threshold = (value, a) => (a.metric === 'Utilization' ? pct(value) : `${value}`);
  const watches = { Utilization: 'Utilization', SpilloverSpend: 'Spillover spend', InvoiceToDate: 'Invoice to date' };
  host.replaceChildren(table(alerts, [
    ['name', 'Name'], ['metric', 'Watches', (m) => watches[m] ?? m], ['deploymentId', 'Deployment', (d) => d ?? 'all'], ['threshold', 'Threshold', threshold],
    ['capsSpillover', 'Caps spillover', (c) => (c ? 'yes' : 'no')],
    ['crossedIn', 'Crossed', (m) => el('span', { class: `badge ${m ? 'Failed' : 'Delivered'}` }, m ? `crossed in ${m}` : 'armed')],
    ['lastCrossedAt', 'Last crossed', time], ['lastCrossedValue', 'Value then', (v, a) => (v == null ? '–' : threshold(v, a))],
    [(a) => a, 'Remove', (a) => el('button', { type: 'button', class: 'secondary', 'aria-label': `Remove alert ${a.name ?? a.id}`, onclick: () => removeAlert(a) }, 'Remove')],
  ], 'No alerts yet: set one below.', 'Alerts'));
}

async function removeAlert(alert) {
  text('alert-error', '');
  const response = await api(`/v1/alerts/${encodeURIComponent(alert.id)}`, { method: 'DELETE' });
  if (!response.ok && response.status !== 404) text('alert-error', await problemText(response));
  await loadAlerts();
}

/**
 * The alert form. A utilization threshold is asked in percent (the API takes a ratio); capping spillover is offered
 * only for spillover spend. One Idempotency-Key per filled-in form: a resent submission sets one alert.
 */
function setupAlertForm(deployments) {
  const form = document.getElementById('alert-form');
  const metric = document.getElementById('a-metric');
  const caps = document.getElementById('a-caps');
  const deployment = document.getElementById('a-deployment');
  deployment.replaceChildren(el('option', { value: '' }, 'All my deployments'),
    ...deployments.filter((d) => d.status !== 'Released').map((d) => el('option', { value: d.id }, `${d.name} (${d.id})`)));
  const describe = () => {
    const spend = metric.value !== 'Utilization';
    text('a-threshold-label', spend ? 'Threshold (an amount in your currency)' : 'Threshold (% of the purchased rate)');
    caps.disabled = metric.value !== 'SpilloverSpend';
    if (caps.disabled) caps.checked = false;
  };
  let key = newKey();
  form.addEventListener('input', () => { key = newKey(); describe(); });
  describe();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    text('alert-error', '');
    const value = Number(document.getElementById('a-threshold').value);
    const body = {
      metric: metric.value,
      threshold: metric.value === 'Utilization' ? value / 100 : value,
      deploymentId: deployment.value || null,
      capsSpillover: caps.checked,
      name: document.getElementById('a-name').value || null,
    };
    const response = await api('/v1/alerts', { method: 'POST', body, headers: { 'Idempotency-Key': key } });
    if (!response.ok) {
      text('alert-error', await problemText(response));
      return;
    }
    form.reset();
    key = newKey();
    describe();
    await loadAlerts();
  });
}
