import { RECEIPT_ACTION, RECEIPT_SOURCE, type IngestReceipt } from '../capture/ingest/receipt.js';
import type { Digest } from '../seal/digest.js';
import { digestKey } from '../sink/keys.js';
import type { ArchivedLine, ArchivedRecord } from './file.js';
import type { Finding } from './findings.js';

/**
 * The ingester's receipts, in chain order: for each log file, every commit's byte range must start
 * where the one before ended. A gap is log lines nobody ingested (an offset moved forward, lines
 * skipped); an overlap is bytes read twice (events then deduplicated by their log line key). The
 * first receipt of a file may start later than byte 0 when the file was read before receipts
 * existed, or before the first file this run read: a note. Memory: one entry per log file.
 */
export class ReceiptCheck {
  private readonly last = new Map<string, { to: number; seq: number; name: string }>();
  readonly findings: Finding[] = [];
  readonly notes: Finding[] = [];

  /** The records add() looks at. */
  static reads(r: ArchivedRecord): boolean {
    return r.op === 'insert' && r.source === RECEIPT_SOURCE && r.action === RECEIPT_ACTION;
  }

  add(d: Digest, lines: ArchivedLine[]): void {
    const where = d.object_key ?? digestKey(d.file_seq);
    for (const { record: r } of lines) {
      if (!ReceiptCheck.reads(r)) continue;
      const receipt = parse(r.statement);
      if (!receipt) {
        this.findings.push({ code: 'bad-ingest-receipt', where, message: `record ${r.seq} is an ingest receipt that does not say which bytes it covers` });
        continue;
      }
      const prev = this.last.get(receipt.file_key);
      const range = `bytes ${receipt.from}-${receipt.to} of log file ${receipt.file_name}`;
      if (!prev) {
        if (receipt.from !== 0) {
          this.notes.push({
            code: 'ingest-receipts-start-late',
            where,
            message:
              `the first receipt seen for log file ${receipt.file_name} (record ${r.seq}) starts at byte ${receipt.from}: ` +
              'the bytes before were ingested before receipts existed, or in files this run did not read',
          });
        }
      } else if (receipt.from > prev.to) {
        this.findings.push({
          code: 'ingest-skipped',
          where,
          message: `bytes ${prev.to}-${receipt.from} of log file ${receipt.file_name} were never ingested: receipt ${r.seq} (${range}) follows receipt ${prev.seq}, which ended at ${prev.to}`,
        });
      } else if (receipt.from < prev.to) {
        this.findings.push({
          code: 'ingest-reread',
          where,
          message: `bytes ${receipt.from}-${Math.min(prev.to, receipt.to)} of log file ${receipt.file_name} were ingested twice: receipt ${r.seq} (${range}) starts before receipt ${prev.seq} ended (${prev.to})`,
        });
      }
      this.last.set(receipt.file_key, { to: receipt.to, seq: r.seq, name: receipt.file_name });
    }
  }
}

function parse(statement: unknown): IngestReceipt | null {
  if (typeof statement !== 'string') return null;
  try {
    const r = JSON.parse(statement) as IngestReceipt;
    return typeof r.file_key === 'string' && Number.isSafeInteger(r.from) && Number.isSafeInteger(r.to) && r.to >= r.from ? r : null;
  } catch {
    return null;
  }
}
