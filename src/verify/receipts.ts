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
/** A receipt as the checks compare it: which bytes of which log file, in which record. */
interface Covered {
  file_key: string;
  file_name: string;
  from: number;
  to: number;
  seq: number;
  where: string;
}

/**
 * What a block of files tells about receipts when checked without the blocks before it (a shard of
 * `verify --shard`): its findings, the first receipt of each log file (judged only once the blocks
 * before are known) and where each log file's receipts end. One entry per log file, whatever the
 * number of receipts.
 */
export interface ReceiptSegment {
  findings: Finding[];
  notes: Finding[];
  openings: Covered[];
  ends: [string, { to: number; seq: number; name: string }][];
}

export class ReceiptCheck {
  private readonly last = new Map<string, { to: number; seq: number; name: string }>();
  readonly findings: Finding[] = [];
  readonly notes: Finding[] = [];
  private readonly openings: Covered[] = [];

  /** segment: the blocks before are unknown, so a log file's first receipt is kept, not judged */
  constructor(private readonly segment = false) {}

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
      const c: Covered = { file_key: receipt.file_key, file_name: receipt.file_name, from: receipt.from, to: receipt.to, seq: r.seq, where };
      if (this.segment && !this.last.has(c.file_key)) this.openings.push(c);
      else this.judge(c);
      this.last.set(c.file_key, { to: c.to, seq: c.seq, name: c.file_name });
    }
  }

  segmentOf(): ReceiptSegment {
    return { findings: this.findings, notes: this.notes, openings: this.openings, ends: [...this.last] };
  }

  /** The next block's receipts, checked where it meets the blocks before (blocks in chain order). */
  absorb(s: ReceiptSegment): void {
    for (const c of s.openings) this.judge(c);
    this.findings.push(...s.findings);
    this.notes.push(...s.notes);
    for (const [key, end] of s.ends) this.last.set(key, end);
  }

  private judge(c: Covered): void {
    const prev = this.last.get(c.file_key);
    const where = c.where;
    const range = `bytes ${c.from}-${c.to} of log file ${c.file_name}`;
    if (!prev) {
      if (c.from !== 0) {
        this.notes.push({
          code: 'ingest-receipts-start-late',
          where,
          message:
            `the first receipt seen for log file ${c.file_name} (record ${c.seq}) starts at byte ${c.from}: ` +
            'the bytes before were ingested before receipts existed, or in files this run did not read',
        });
      }
    } else if (c.from > prev.to) {
      this.findings.push({
        code: 'ingest-skipped',
        where,
        message: `bytes ${prev.to}-${c.from} of log file ${c.file_name} were never ingested: receipt ${c.seq} (${range}) follows receipt ${prev.seq}, which ended at ${prev.to}`,
      });
    } else if (c.from < prev.to) {
      this.findings.push({
        code: 'ingest-reread',
        where,
        message: `bytes ${c.from}-${Math.min(prev.to, c.to)} of log file ${c.file_name} were ingested twice: receipt ${c.seq} (${range}) starts before receipt ${prev.seq} ended (${prev.to})`,
      });
    }
    this.last.set(c.file_key, { to: c.to, seq: c.seq, name: c.file_name });
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
