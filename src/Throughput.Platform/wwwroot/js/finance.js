// Finance: revenue by month and model, the invoice register with links to each invoice, CSV exports of both.
import { api, chartDefaults, columnsOf, download, el, frame, monthOf, poll, problemText, seriesColors, table, text } from './app.js';

const REFRESH_MS = 30_000;

if (frame('Finance')) start();

function start() {
  const Chart = chartDefaults();
  const from = document.getElementById('from');
  const to = document.getElementById('to');
  const month = document.getElementById('month');
  from.value = monthOf(new Date(), 5);
  to.value = monthOf();
  month.value = monthOf(new Date(), 1); // invoices are issued for the month just closed
  const chart = new Chart(document.getElementById('c-revenue'), {
    type: 'bar',
    data: { labels: [], datasets: [] },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: 'revenue' } } } },
  });

  const revenue = async () => {
    text('revenue-error', '');
    const response = await api(`/v1/finance/revenue?from=${from.value}&to=${to.value}`);
    unavailable(response.status === 404);
    if (response.status === 404) return;
    if (!response.ok) {
      text('revenue-error', await problemText(response));
      return;
    }
    const rows = await response.json();
    renderRevenue(rows, chart);
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
    const columns = [['documentNumber', 'Invoice', (number, r) => el('a', { href: `invoice.html?id=${encodeURIComponent(r.id)}` }, number)],
      ...columnsOf(rows).filter(([k]) => !['documentNumber', 'id', 'month'].includes(k))]; // the link holds the id; the month is the one chosen
    document.getElementById('register').replaceChildren(table(rows, columns, `No invoices for ${month.value}.`, `Invoices for ${month.value}`));
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

  const refresh = poll(() => Promise.all([revenue(), register()]), REFRESH_MS).now;
  for (const input of [from, to]) input.addEventListener('change', revenue);
  month.addEventListener('change', register);
  document.getElementById('range').addEventListener('submit', (e) => { e.preventDefault(); refresh(); });
  document.getElementById('register-month').addEventListener('submit', (e) => { e.preventDefault(); register(); });
}

function unavailable(missing) {
  document.getElementById('unavailable').hidden = !missing;
  document.getElementById('revenue-chart-box').hidden = missing;
  for (const id of ['revenue-csv', 'register-csv']) document.getElementById(id).disabled = missing;
  if (missing) {
    document.getElementById('revenue').replaceChildren(el('p', { class: 'empty' }, 'No revenue to show.'));
    document.getElementById('register').replaceChildren(el('p', { class: 'empty' }, 'No invoice register to show.'));
  }
}

/**
 * Rows are month × model × deployment type × region × currency; the chart stacks models (per currency) by month.
 * The amount is `amount`, or `net` where the API splits revenue into kinds (it is built in parallel).
 */
function renderRevenue(rows, chart) {
  const amountOf = (r) => r.amount ?? r.net ?? 0;
  const seriesOf = (r) => `${r.model ?? 'whole invoice'} (${r.currency})`;
  const months = [...new Set(rows.map((r) => r.month))].sort();
  const series = [...new Set(rows.map(seriesOf))].sort();
  chart.data.labels = months;
  chart.data.datasets = series.map((name, i) => ({
    label: name,
    backgroundColor: seriesColors[i % seriesColors.length],
    data: months.map((m) => rows.filter((r) => r.month === m && seriesOf(r) === name).reduce((a, r) => a + amountOf(r), 0)),
  }));
  chart.update('none');
  // What a month earned per model first, then how it splits.
  const first = ['month', 'model', 'net', 'invoiced', 'credited'];
  const rank = (k) => (first.includes(k) ? first.indexOf(k) : first.length);
  const columns = columnsOf(rows).filter(([k]) => !['id', 'period', 'currency'].includes(k)).sort(([a], [b]) => rank(a) - rank(b));
  document.getElementById('revenue').replaceChildren(table(rows, columns, 'No revenue in this range.', 'Revenue rows'));
}
