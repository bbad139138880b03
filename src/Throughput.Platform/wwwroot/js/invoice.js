// One invoice, as GET /v1/invoices/{id} answers it: its scalar fields, then each list of lines as a table.
import { api, columnsOf, download, el, frame, heading, money, moneyKey, pageForRole, problemText, table, text } from './app.js';

const who = frame('Finance', 'Tenant');
if (who) start();

async function start() {
  const id = new URLSearchParams(location.search).get('id') ?? '';
  document.getElementById('back').href = pageForRole[who.role];
  text('title', `Invoice ${id}`);
  // Tenants read their own invoices; finance reads any invoice under /v1/finance (falling back to the tenant route).
  const paths = [...(who.role === 'Finance' ? [`/v1/finance/invoices/${encodeURIComponent(id)}`] : []), `/v1/invoices/${encodeURIComponent(id)}`];
  let response;
  let path;
  for (path of paths) {
    response = await api(path);
    if (response.ok) break;
  }
  document.getElementById('csv').addEventListener('click', () =>
    download(`${path}?format=csv`, `invoice-${id}.csv`).catch((e) => text('error', `Could not download: ${e.message}`)));
  const host = document.getElementById('invoice');
  if (!response.ok) {
    host.replaceChildren(el('p', { class: 'empty' }, response.status === 404 ? `No invoice '${id}'.` : await problemText(response)));
    document.getElementById('csv').disabled = true;
    return;
  }
  const invoice = await response.json();
  const scalars = Object.entries(invoice).filter(([, v]) => v === null || typeof v !== 'object');
  const lists = Object.entries(invoice).filter(([, v]) => Array.isArray(v));
  host.replaceChildren(
    el('dl', { class: 'kpis' }, scalars.map(([k, v]) => el('div', { class: 'kpi' }, el('dt', {}, heading(k)),
      el('dd', {}, moneyKey.test(k) ? money(v, invoice) : String(v ?? '–'))))),
    ...lists.map(([k, rows]) => el('div', {}, el('h2', {}, heading(k)),
      table(rows, columnsOf(rows).map(([c, h, f]) => [c, h, f ? (v, r) => f(v, { currency: invoice.currency, ...r }) : undefined]), 'None.', heading(k)))));
}
