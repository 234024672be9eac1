import type { Digest } from '../seal/digest.js';
import type { ArchivedLine } from './archived.js';
import { checkFile } from './file.js';
import type { Finding } from './findings.js';
import type { ChainState } from './links.js';
import { RecordedFindings } from './recorded.js';
import { ReceiptCheck } from './receipts.js';

/** One data file to check against its signed digest (`before`: the chain state its digest links from). */
export interface FileTask {
  body: Buffer | null;
  digest: Digest;
  before: ChainState;
}

/**
 * What the walk needs of a checked file. Every per-file check is done where the file is checked;
 * what crosses files (tamper and gap records and their acknowledgements, attestations, ingest
 * receipts) is judged in chain order by the walk, from `notable`: those records alone, so a worker
 * hands back a few records, not the file (records the cross-file checks do not read cannot change
 * what they find).
 */
export interface FileOutcome {
  findings: Finding[];
  records: number;
  notable: ArchivedLine[];
  /** every record, when the caller asked for them (query) and the file had no findings */
  lines?: ArchivedLine[];
  /** the audit_log ids of its `insert` records, when asked for (verify --reconcile) */
  ids?: ArchivedIds;
}

/** What a file should hand back besides its findings. */
export interface Wanted {
  /** every record (query) */
  lines: boolean;
  /** the audit_log ids it archives (verify --reconcile) */
  ids: boolean;
}

/**
 * audit_log ids, compact enough to cross threads: whole numbers as sorted runs (start, end, start,
 * end, ...: a file of 10,000 events is usually one run), anything else as text.
 */
export interface ArchivedIds {
  runs: number[];
  text: string[];
}

export function idsOf(lines: readonly ArchivedLine[]): ArchivedIds {
  const numbers: number[] = [];
  const text: string[] = [];
  for (const { record } of lines) {
    if (record.op !== 'insert' || typeof record.id !== 'string') continue;
    const n = Number(record.id);
    if (Number.isSafeInteger(n) && n >= 0 && String(n) === record.id) numbers.push(n);
    else text.push(record.id);
  }
  numbers.sort((a, b) => a - b);
  const runs: number[] = [];
  for (const n of numbers) {
    if (runs.length > 0 && n <= runs[runs.length - 1]! + 1) runs[runs.length - 1] = Math.max(runs[runs.length - 1]!, n);
    else runs.push(n, n);
  }
  return { runs, text };
}

export function isNotable(line: ArchivedLine): boolean {
  return RecordedFindings.reads(line.record) || ReceiptCheck.reads(line.record);
}

/** Check one file; pure, and the same code on the main thread and in a worker. */
export function checkTask(t: FileTask, want: Wanted): FileOutcome {
  // Only what is handed back is kept: the file's other records die young (RecordsCheck).
  const keepAll = want.lines || want.ids;
  const { findings, lines, records } = checkFile(t.body, t.digest, t.before, keepAll ? undefined : isNotable);
  const out: FileOutcome = { findings, records, notable: keepAll ? lines.filter(isNotable) : lines };
  if (want.lines && findings.length === 0) out.lines = lines;
  if (want.ids) out.ids = idsOf(lines);
  return out;
}

/** Checks files, in whatever order it likes; the walk takes outcomes back in chain order. */
export interface FileChecker {
  check(task: FileTask): Promise<FileOutcome>;
  /** files worth having in flight at once */
  readonly window: number;
  close(): Promise<void>;
}

/** Every file on the calling thread, one at a time (small archives, `--workers 0`, query). */
export function inlineChecker(want: Wanted): FileChecker {
  return {
    window: 1,
    check: (t) => Promise.resolve(checkTask(t, want)),
    close: () => Promise.resolve(),
  };
}
