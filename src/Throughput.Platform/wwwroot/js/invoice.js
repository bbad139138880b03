// One issued invoice: its number, who and what month it bills, its lines, total, and the credit notes against it.
import { api, download, el, frame, linesTable, money, pageForRole, problemText, table, text, time } from './app.js';

const who = frame('Finance', 'Tenant');
if (who) start();

async function start() {
  const id = new URLSearchParams(location.search).get('id') ?? '';
  document.getElementById('back').href = pageForRole[who.role];
  // Finance reads any invoice; a tenant reads its own only (another tenant's answers 404, like one that does not exist).
  const path = `${who.role === 'Finance' ? '/v1/finance/invoices' : '/v1/invoices'}/${encodeURIComponent(id)}`;
  const csv = document.getElementById('csv');
  const pdf = document.getElementById('pdf');
  const response = await api(path);
  const host = document.getElementById('invoice');
  if (!response.ok) {
    text('title', 'Invoice');
    host.replaceChildren(el('p', { class: 'empty', id: 'not-found' }, response.status === 404 ? `No invoice '${id}'.` : await problemText(response)));
    csv.disabled = true;
    pdf.disabled = true;
    return;
  }
  const invoice = await response.json();
  document.title = `${invoice.documentNumber} · Throughput`;
  text('title', `Invoice ${invoice.documentNumber}`);
  // Who issued it (a finance key's id, or the automatic close) is for finance; a customer sees when.
  const by = who.role === 'Finance' ? ` by ${invoice.issuedBy}` : '';
  text('invoice-meta', `${invoice.tenantId} · billing month ${invoice.month} · ${invoice.currency} · issued ${time(invoice.issuedAt)}${by}`);
  csv.addEventListener('click', () =>
    download(`${path}?format=csv`, `${invoice.documentNumber}.csv`).catch((e) => text('error', `Could not download: ${e.message}`)));
  pdf.addEventListener('click', () =>
    download(`${path}?format=pdf`, `${invoice.documentNumber}.pdf`, 'application/pdf').catch((e) => text('error', `Could not download: ${e.message}`)));
  host.replaceChildren(
    el('dl', { class: 'kpis' },
      el('div', { class: 'kpi' }, el('dt', {}, 'Total'), el('dd', { id: 'invoice-total' }, money(invoice.total, invoice))),
      el('div', { class: 'kpi' }, el('dt', {}, 'Credited'), el('dd', { id: 'invoice-credited' }, money(invoice.credited, invoice))),
      el('div', { class: 'kpi' }, el('dt', {}, 'Balance'), el('dd', { id: 'invoice-balance' }, money(invoice.balance, invoice)))),
    el('section', { class: 'card wide', 'aria-labelledby': 'lines-title', id: 'lines' },
      el('h2', { id: 'lines-title' }, 'Lines'), linesTable(invoice.lines, invoice.currency, 'No lines.', 'Invoice lines')),
    el('section', { class: 'card wide', 'aria-labelledby': 'credit-notes-title', id: 'credit-notes' },
      el('h2', { id: 'credit-notes-title' }, 'Credit notes'),
      table(invoice.creditNotes, [['documentNumber', 'Credit note'], ['issuedAt', 'Issued', time], ['reason', 'Reason'], ['total', 'Amount', (v) => money(v, invoice)]],
        'No credit notes.', 'Credit notes')));
}
