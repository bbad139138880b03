// Finance: revenue by month and model (one chart per currency) beside the accrued revenue of months not yet invoiced, the invoice register with links to each invoice (where
// credit notes are issued), sell-through and utilization of a month, CSV exports. Every figure says when it was read.
import { api, chartDefaults, download, el, fmt, frame, monthOf, pct, poll, problemText, seriesColors, table, text, time } from './app.js';

const REFRESH_MS = 30_000;

if (frame('Finance')) start();

function start() {
  const Chart = chartDefaults();
  const from = document.getElementById('from');
  const to = document.getElementById('to');
  const month = document.getElementById('month');
  const capacityMonth = document.getElementById('capacity-month-input');
  from.value = monthOf(new Date(), 5);
  to.value = monthOf();
  month.value = monthOf(new Date(), 1); // invoices are issued for the month just closed
  capacityMonth.value = monthOf();
  const charts = new Map(); // currency → chart

  const revenue = async () => {
    text('revenue-error', '');
    // The months that may still have drafts: this one, and the last until its invoices are issued (a grace period of days).
    const open = [monthOf(new Date(), 1), monthOf()].filter((m) => m >= from.value && m <= to.value);
    const [response, ...accrued] = await Promise.all([
      api(`/v1/finance/revenue?from=${from.value}&to=${to.value}`), ...open.map((m) => api(`/v1/finance/accrued?month=${m}`))]);
    unavailable(response.status === 404);
    if (response.status === 404) return;
    const failed = [response, ...accrued].find((r) => !r.ok);
    if (failed) {
      text('revenue-error', await problemText(failed));
      return;
    }
    renderRevenue(await response.json(), (await Promise.all(accrued.map((r) => r.json()))).flat(), Chart, charts);
    asOf('revenue-asof');
  };
  const register = async () => {
    text('register-error', '');
    const response = await api(`/v1/finance/invoices?month=${month.value}`);
    if (response.status === 404) {
      document.getElementById('register').replaceChildren(el('p', { class: 'empty' }, 'No invoice register: the finance API is not available yet.'));
      return;
    }
    if (!response.ok) {
      text('register-error', await problemText(response));
      return;
    }
    const rows = await response.json();
    document.getElementById('register').replaceChildren(table(rows, [
      ['documentNumber', 'Invoice', (number, r) => el('a', { href: `invoice.html?id=${encodeURIComponent(r.id)}` }, number)],
      ['tenantName', 'Tenant', (name, r) => el('span', { title: r.tenantId }, name, name === r.tenantId ? null : el('small', { class: 'meta' }, ` (${r.tenantId})`))],
      ['currency', 'Currency'], ['total', 'Total', amount], ['credited', 'Credited', amount], ['balance', 'Balance', amount],
      ['lines', 'Lines'], ['issuedAt', 'Issued', time], ['issuedBy', 'Issued by'],
    ], `No invoices for ${month.value}.`, `Invoices for ${month.value}`));
    asOf('register-asof');
  };
  const capacity = async () => {
    const [sold, used] = await Promise.all([
      api(`/v1/finance/sell-through?month=${capacityMonth.value}`), api(`/v1/finance/utilization?month=${capacityMonth.value}`)]);
    report(sold, 'sell-through', [['model', 'Model'], ['region', 'Region'], ['capacityPtuHours', 'Capacity (PTU-h)', fmt],
      ['soldPtuHours', 'Sold (PTU-h)', fmt], ['sellThrough', 'Sell-through', pct]], 'No capacity pools in this month.');
    report(used, 'utilization', [['model', 'Model'], ['region', 'Region'], ['band', 'Utilization'],
      ['deploymentHours', 'Deployment-hours', fmt], ['share', 'Share', pct]], 'Nothing was sold in this month.');
  };
  const report = async (response, id, columns, empty) => {
    text(`${id}-error`, '');
    if (!response.ok) {
      text(`${id}-error`, await problemText(response));
      return;
    }
    document.getElementById(id).replaceChildren(table(await response.json(), columns, empty, document.getElementById(`${id}-title`).textContent));
    asOf(`${id}-asof`);
  };

  const exporting = (id, path, filename, errorId) => document.getElementById(id).addEventListener('click', async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    text(errorId, '');
    try {
      await download(path(), filename());
    } catch (e) {
      text(errorId, `Could not download: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  });
  exporting('revenue-csv', () => `/v1/finance/revenue?from=${from.value}&to=${to.value}&format=csv`, () => `revenue-${from.value}-${to.value}.csv`, 'revenue-error');
  exporting('register-csv', () => `/v1/finance/invoices?month=${month.value}&format=csv`, () => `invoices-${month.value}.csv`, 'register-error');

  const refresh = poll(() => Promise.all([revenue(), register(), capacity()]), REFRESH_MS).now;
  for (const input of [from, to]) input.addEventListener('change', revenue);
  month.addEventListener('change', register);
  capacityMonth.addEventListener('change', capacity);
  for (const id of ['range', 'register-month', 'capacity-month']) document.getElementById(id).addEventListener('submit', (e) => { e.preventDefault(); refresh(); });
}

const amount = (n) => (typeof n === 'number' ? new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n) : n ?? '');

/** When a section was read: projections follow the log by seconds, so a figure is as of its reading, not of now. */
function asOf(id) {
  text(id, `As of ${time(new Date().toISOString())}`);
}

function unavailable(missing) {
  document.getElementById('unavailable').hidden = !missing;
  document.getElementById('revenue-charts').hidden = missing;
  for (const id of ['revenue-csv', 'register-csv']) document.getElementById(id).disabled = missing;
  if (missing) {
    document.getElementById('revenue').replaceChildren(el('p', { class: 'empty' }, 'No revenue to show.'));
    document.getElementById('register').replaceChildren(el('p', { class: 'empty' }, 'No invoice register to show.'));
  }
}

/**
 * Rows are month × currency × model × deployment type × region of issued invoices; accrued is month × currency of drafts
 * not yet issued. One chart per currency, stacking its models by month with the accrued revenue on top: amounts in
 * different currencies are never drawn against one axis (a few dollars vanish beside thousands of euros).
 */
function renderRevenue(rows, accrued, Chart, charts) {
  const months = [...new Set([...rows, ...accrued].map((r) => r.month))].sort();
  const currencies = [...new Set([...rows, ...accrued].map((r) => r.currency))].sort();
  const host = document.getElementById('revenue-charts');
  for (const [currency, chart] of charts) {
    if (currencies.includes(currency)) continue;
    chart.destroy();
    charts.delete(currency);
    document.getElementById(`revenue-${currency}`)?.remove();
  }
  if (!currencies.length) host.replaceChildren(el('p', { class: 'empty' }, 'No revenue in this range.'));
  else host.querySelector(':scope > p.empty')?.remove();
  for (const currency of currencies) {
    if (!charts.has(currency)) {
      const canvas = el('canvas', { id: `c-revenue-${currency}`, role: 'img', 'aria-label': `Revenue in ${currency} per month, stacked by model; the table below has the numbers` });
      host.append(el('figure', { id: `revenue-${currency}` }, el('figcaption', {}, `Revenue in ${currency}`), el('div', { class: 'chart' }, canvas)));
      charts.set(currency, new Chart(canvas, {
        type: 'bar',
        data: { labels: [], datasets: [] },
        options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: currency } } } },
      }));
    }
    const chart = charts.get(currency);
    const mine = rows.filter((r) => r.currency === currency);
    const series = [...new Set(mine.map(seriesOf))].sort();
    chart.data.labels = months;
    chart.data.datasets = [...series.map((name, i) => ({
      label: name,
      backgroundColor: seriesColors[i % seriesColors.length],
      data: months.map((m) => mine.filter((r) => r.month === m && seriesOf(r) === name).reduce((a, r) => a + r.net, 0)),
    })), {
      label: ACCRUED,
      backgroundColor: 'rgba(100, 116, 139, 0.35)',
      borderColor: '#64748b',
      borderWidth: 1,
      data: months.map((m) => accrued.find((a) => a.month === m && a.currency === currency)?.accrued ?? 0),
    }];
    chart.update('none');
  }
  document.getElementById('accrued').replaceChildren(table(accrued, [
    ['month', 'Month'], ['currency', 'Currency'], ['accrued', 'Accrued, not yet invoiced', amount], ['asOf', 'As of', time],
  ], 'Nothing accrued: every invoice of the open months in this range is issued, or nothing was sold.', 'Accrued revenue'));
  document.getElementById('revenue').replaceChildren(table(rows, [
    ['month', 'Month'], ['currency', 'Currency'], ['model', 'Model', (m) => m || 'whole invoice'], [(r) => [r.type, r.region].filter(Boolean).join(' · '), 'Type · region'],
    ['net', 'Net', amount], ['invoiced', 'Invoiced', amount], ['credited', 'Credited', amount], ['provisioned', 'Provisioned', amount],
    ['reservations', 'Reservations', amount], ['spillover', 'Spillover', amount], ['adjustments', 'Prior-period', amount], ['billedPtuHours', 'Billed PTU-h', fmt],
  ], 'No revenue in this range.', 'Revenue rows'));
}

const seriesOf = (r) => r.model || 'whole invoice';
const ACCRUED = 'Accrued, not yet invoiced';
