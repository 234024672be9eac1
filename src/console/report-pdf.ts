import type { Query } from '../query/filter.js';
import type { Found } from './search.js';

const plain = (k: string) => k.replace(/T00:00:00\.000000Z$/, '').replace('.000000Z', 'Z');

const COLUMNS: [string, number, (f: Found) => unknown][] = [
  ['Occurred (UTC)', 118, (f) => f.record.occurred_at],
  ['Who (application)', 90, (f) => f.record.app_user_id],
  ['Database role', 90, (f) => f.record.session_user_name],
  ['Action', 52, (f) => f.record.action],
  ['Table', 120, (f) => [f.record.schema_name, f.record.table_name].filter(Boolean).join('.')],
  ['Row', 70, (f) => f.record.row_id],
  ['Columns', 90, (f) => f.record.changed_columns],
  ['Source', 52, (f) => f.record.source],
  ['Outcome', 52, (f) => f.record.outcome],
];

/**
 * The patient access report as a PDF (pdfkit: a maintained, pure-JavaScript PDF writer with the
 * standard fonts built in): the same rows as the page, and the archive head it was verified against.
 */
export async function reportPdf(
  q: Query,
  r: { events: Found[]; total: number; truncated: boolean; head: string | null; madeAt: string; by: string; summary: string },
): Promise<Buffer> {
  const { default: PDFDocument } = await import('pdfkit');
  const doc = new PDFDocument({
    size: 'A4',
    layout: 'landscape',
    margin: 36,
    info: { Title: `Access report for patient ${q.customer}`, Producer: 'pg-audit-shipper' },
  });
  const chunks: Buffer[] = [];
  doc.on('data', (b: Buffer) => chunks.push(b));
  const done = new Promise<void>((resolve, reject) => {
    doc.on('end', resolve);
    doc.on('error', reject);
  });
  doc.font('Helvetica-Bold').fontSize(16).text(`Access report for patient ${q.customer}`);
  doc.font('Helvetica').fontSize(9).moveDown(0.5);
  doc.text(`Period: ${plain(q.from!)} to ${plain(q.to!)} (UTC, the end excluded). Accesses: ${r.total}.`);
  doc.text(`Verified against archive head ${r.head ?? '(none)'}. Made ${r.madeAt} by ${r.by}.`);
  if (r.truncated) doc.text(`This document lists the first ${r.events.length} of ${r.total} accesses; the CSV holds them all.`);
  doc.moveDown(0.5);
  const left = doc.page.margins.left;
  const row = (values: string[], bold: boolean) => {
    if (doc.y > doc.page.height - doc.page.margins.bottom - 24) doc.addPage();
    const y = doc.y;
    let x = left;
    let height = 0;
    doc.font(bold ? 'Helvetica-Bold' : 'Helvetica').fontSize(8);
    values.forEach((v, i) => {
      const w = COLUMNS[i]![1];
      height = Math.max(height, doc.heightOfString(v, { width: w - 4 }));
      doc.text(v, x, y, { width: w - 4 });
      x += w;
    });
    doc.x = left;
    doc.y = y + height + 3;
  };
  row(
    COLUMNS.map(([h]) => h),
    true,
  );
  for (const f of r.events)
    row(
      COLUMNS.map(([, , get]) => (get(f) === null || get(f) === undefined ? '' : String(get(f)))),
      false,
    );
  doc
    .moveDown(1)
    .font('Courier')
    .fontSize(7)
    .text(r.summary, left, doc.y, { width: doc.page.width - left * 2 });
  doc.end();
  await done;
  return Buffer.concat(chunks);
}
