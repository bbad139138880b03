// The operator's page: pools (capacity, sold, free), Forge's global view (per geography and region: capacity, sold,
// placed, served utilization), deployments by utilization from the admission query, throttled deployments and
// quarantined metering, refreshed every few seconds; the platform-wide webhook endpoints and their deliveries.
import { api, chartDefaults, el, fmt, frame, palette, pct, poll, renderWebhooks, table, text, time } from './app.js';

const REFRESH_MS = 4000;
const TOP = 12;

if (frame('Operator')) start();

function start() {
  const Chart = chartDefaults();
  const regionSelect = document.getElementById('region');
  const horizontal = (id, datasets, stacked, max) => new Chart(document.getElementById(id), {
    type: 'bar',
    data: { labels: [], datasets },
    options: { indexAxis: 'y', scales: { x: { stacked, beginAtZero: true, max }, y: { stacked, ticks: { autoSkip: false } } } },
  });
  const poolsChart = horizontal('c-pools', [
    { label: 'Sold PTU', data: [], backgroundColor: palette.sold },
    { label: 'Free PTU', data: [], backgroundColor: palette.free },
  ], true);
  const utilChart = horizontal('c-util', [{ label: 'Utilization %', data: [], backgroundColor: [] }], false);
  utilChart.options.scales.x.suggestedMax = 100;

  const refresh = async () => {
    const region = regionSelect.value;
    const [pools, global, admission, quarantine] = await Promise.all([
      api('/v1/operator/pools').then((r) => (r.ok ? r.json() : [])),
      api('/v1/operator/global-view').then((r) => (r.ok ? r.json() : null)),
      api(`/v1/admission${region ? `?region=${encodeURIComponent(region)}` : ''}`).then((r) => (r.ok ? r.json() : [])),
      api('/v1/operator/quarantine?limit=100').then((r) => (r.ok ? r.json() : [])),
    ]);
    renderPools(pools, poolsChart, regionSelect);
    if (global) renderGlobal(global);
    renderDeployments(admission, utilChart);
    renderQuarantine(quarantine);
    text('updated', `live · updated ${new Date().toLocaleTimeString()}`);
    document.getElementById('updated').hidden = false;
  };
  const { now } = poll(refresh, REFRESH_MS);
  poll(() => renderWebhooks(document.getElementById('webhooks')), 10_000);
  regionSelect.addEventListener('change', now);
}

function renderPools(pools, chart, regionSelect) {
  const sum = (k) => pools.reduce((a, p) => a + p[k], 0);
  text('k-capacity', `${fmt(sum('capacityPtu'))} PTU`);
  text('k-sold', `${fmt(sum('soldPtu'))} PTU`);
  text('k-free', `${fmt(sum('freePtu'))} PTU`);
  chart.data.labels = pools.map((p) => `${p.model} · ${p.region}`);
  chart.data.datasets[0].data = pools.map((p) => p.soldPtu);
  chart.data.datasets[1].data = pools.map((p) => p.freePtu);
  fitHeight('pools-chart-box', chart, pools.length);
  chart.update('none');
  document.getElementById('pools').replaceChildren(table(pools, [
    ['model', 'Model'], ['region', 'Region'], ['capacityPtu', 'Capacity', fmt], ['soldPtu', 'Sold', fmt], ['freePtu', 'Free', fmt],
    [(p) => (p.capacityPtu ? p.soldPtu / p.capacityPtu : 0), 'Sold share', (f) => meter(f)],
  ], 'No capacity registered yet (PUT /v1/operator/pools/{model}/{region}).', 'Capacity pools'));

  const regions = [...new Set(pools.map((p) => p.region))].sort();
  const have = [...regionSelect.options].slice(1).map((o) => o.value);
  if (regions.join() !== have.join()) {
    const selected = regionSelect.value;
    regionSelect.replaceChildren(el('option', { value: '' }, 'All regions'), ...regions.map((r) => el('option', { value: r, selected: r === selected }, r)));
  }
}

function renderGlobal(view) {
  text('k-sold-share', pct(view.fleet.soldOfCapacity));
  const figures = [
    [(r) => r.figures.capacityPtu, 'Capacity', fmt], [(r) => r.figures.soldPtu, 'Sold', fmt], [(r) => r.figures.placedPtu, 'Placed', fmt],
    [(r) => r.figures.soldOfCapacity, 'Sold ÷ capacity', (f) => meter(f)], [(r) => r.figures.placedOfCapacity, 'Placed ÷ capacity', (f) => meter(f)],
    [(r) => r.figures.recentUtilization, 'Served, 5 min', pct], [(r) => r.figures.monthUtilization, `Served, ${view.month}`, pct],
  ];
  document.getElementById('geographies').replaceChildren(table([...view.geographies, { geography: 'Fleet', regions: [], figures: view.fleet }],
    [['geography', 'Geography'], ['regions', 'Regions', (r) => r.join(', ')], ...figures], 'No capacity registered yet.', 'Geographies and the fleet'));
  document.getElementById('global-regions').replaceChildren(table(view.regions,
    [['region', 'Region'], ['geography', 'Geography'], ...figures, ['pools', 'Models', (p) => p.map((x) => x.model).join(', ')]],
    'No capacity registered yet.', 'Regions'));
}

function renderDeployments(deployments, chart) {
  const sorted = [...deployments].sort((a, b) => b.utilization - a.utilization);
  const throttled = sorted.filter((d) => d.state === 'Throttled');
  text('k-active', fmt(deployments.length));
  text('k-throttled', fmt(throttled.length));
  document.getElementById('k-throttled-box').classList.toggle('bad', throttled.length > 0);

  const top = sorted.slice(0, TOP);
  chart.data.labels = top.map((d) => `${d.deploymentId.slice(0, 16)} · ${d.tenantId}`);
  chart.data.datasets[0].data = top.map((d) => Math.round(d.utilization * 1000) / 10);
  chart.data.datasets[0].backgroundColor = top.map((d) => (d.state === 'Throttled' || d.utilization >= 1 ? '#dc2626' : palette.util));
  fitHeight('util-chart-box', chart, top.length);
  chart.update('none');

  const columns = [
    ['deploymentId', 'Deployment'], ['tenantId', 'Tenant'], ['model', 'Model'], ['region', 'Region'],
    ['state', 'State', (s) => el('span', { class: `badge ${s}` }, s)],
    ['tokensPerMinute', 'Tokens/min', fmt], ['utilization', 'Utilization', (f) => meter(f)],
  ];
  document.getElementById('deployments').replaceChildren(table(sorted, columns, 'No active deployments.', 'Deployments by utilization'));
  document.getElementById('throttled').replaceChildren(table(throttled,
    [columns[0], columns[1], ['utilization', 'Utilization', pct], ['retryAfterMs', 'Retry after', (ms) => `${fmt(ms / 1000)} s`]],
    'Nothing is throttled.', 'Throttled deployments'));
}

function renderQuarantine(items) {
  text('k-quarantined', fmt(items.length));
  document.getElementById('quarantine').replaceChildren(table(items, [
    ['quarantinedAt', 'When', time], ['reason', 'Reason'], ['producerId', 'Producer'], ['sequence', 'Sequence'],
    ['deploymentId', 'Deployment'], ['detail', 'Detail'],
  ], 'No quarantined metering.', 'Quarantined metering'));
  for (const cell of document.querySelectorAll('#quarantine td:last-child')) cell.classList.add('wrap');
}

/** A horizontal bar chart as tall as its bars need (set through the CSSOM, which the CSP allows). */
function fitHeight(boxId, chart, bars) {
  const height = `${Math.max(140, 60 + bars * 30)}px`;
  const box = document.getElementById(boxId);
  if (box.style.height !== height) {
    box.style.height = height;
    chart.resize();
  }
}

/** A fraction as a small bar and a percentage (the width is set through the CSSOM, which the CSP allows). */
function meter(fraction) {
  const fill = el('span');
  fill.style.width = `${Math.min(100, fraction * 100)}%`;
  return el('span', {}, el('span', { class: `bar${fraction >= 1 ? ' over' : ''}`, 'aria-hidden': 'true' }, fill), pct(fraction));
}
