// One issued invoice: its number, who and what month it bills, its lines, total, and the credit notes against it;
// finance issues credit notes against it here.
import { api, download, el, frame, linesTable, money, newKey, pageForRole, problemText, table, text, time } from './app.js';

const who = frame('Finance', 'Tenant');
if (who) start();

async function start() {
  const id = new URLSearchParams(location.search).get('id') ?? '';
  document.getElementById('back').href = pageForRole[who.role];
  // Finance reads any invoice; a tenant reads its own only (another tenant's answers 404, like one that does not exist).
  const path = `${who.role === 'Finance' ? '/v1/finance/invoices' : '/v1/invoices'}/${encodeURIComponent(id)}`;
  const csv = document.getElementById('csv');
  const pdf = document.getElementById('pdf');
  const invoice = await load(path, id);
  if (!invoice) {
    csv.disabled = true;
    pdf.disabled = true;
    return;
  }
  document.title = `${invoice.documentNumber} · Throughput`;
  text('title', `Invoice ${invoice.documentNumber}`);
  // Who issued it (a finance key's id, or the automatic close) is for finance; a customer sees when.
  const by = who.role === 'Finance' ? ` by ${invoice.issuedBy}` : '';
  const billTo = invoice.billTo && invoice.billTo !== invoice.tenantId ? `${invoice.billTo} (${invoice.tenantId})` : invoice.tenantId;
  text('invoice-meta', `${billTo} · billing month ${invoice.month} · ${invoice.currency} · issued ${time(invoice.issuedAt)}${by}`);
  csv.addEventListener('click', () =>
    download(`${path}?format=csv`, `${invoice.documentNumber}.csv`).catch((e) => text('error', `Could not download: ${e.message}`)));
  pdf.addEventListener('click', () =>
    download(`${path}?format=pdf`, `${invoice.documentNumber}.pdf`, 'application/pdf').catch((e) => text('error', `Could not download: ${e.message}`)));
  render(invoice);
  if (who.role === 'Finance') setupCredit(invoice, () => load(path, id).then((i) => i && render(i)));
}

async function load(path, id) {
  const response = await api(path);
  if (response.ok) return response.json();
  text('title', 'Invoice');
  document.getElementById('invoice').replaceChildren(el('p', { class: 'empty', id: 'not-found' },
    response.status === 404 ? `No invoice '${id}'.` : await problemText(response)));
  return null;
}

function render(invoice) {
  document.getElementById('invoice').replaceChildren(
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

/**
 * The credit note form: one Idempotency-Key per filled-in form, so a retried submit credits once; a new key once it
 * has credited. The invoice is read again afterwards (its balance and list of credit notes change with the note).
 */
function setupCredit(invoice, reload) {
  document.getElementById('credit').hidden = false;
  text('credit-help', `Credits an amount in ${invoice.currency} against the invoice as a whole, up to its balance. It is numbered, counts in this month's revenue and cannot be withdrawn.`);
  const form = document.getElementById('credit-form');
  let key = newKey();
  form.addEventListener('input', () => text('credit-status', ''));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = event.submitter;
    text('credit-error', '');
    text('credit-status', '');
    button.disabled = true;
    try {
      const response = await api(`/v1/finance/invoices/${encodeURIComponent(invoice.id)}/credit-notes`, {
        method: 'POST',
        body: { amount: Number(document.getElementById('credit-amount').value), reason: document.getElementById('credit-reason').value },
        headers: { 'Idempotency-Key': key },
      });
      if (!response.ok) {
        text('credit-error', await problemText(response));
        return;
      }
      const note = await response.json();
      key = newKey();
      form.reset();
      text('credit-status', `Credit note ${note.documentNumber} issued for ${money(note.total, note)}.`);
      await reload();
    } finally {
      button.disabled = false;
    }
  });
}

