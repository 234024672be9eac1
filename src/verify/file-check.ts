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
}

export function isNotable(line: ArchivedLine): boolean {
  return RecordedFindings.reads(line.record) || ReceiptCheck.reads(line.record);
}

/** Check one file; pure, and the same code on the main thread and in a worker. */
export function checkTask(t: FileTask, keepLines: boolean): FileOutcome {
  const { findings, lines } = checkFile(t.body, t.digest, t.before);
  const out: FileOutcome = { findings, records: lines.length, notable: lines.filter(isNotable) };
  if (keepLines && findings.length === 0) out.lines = lines;
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
export function inlineChecker(keepLines: boolean): FileChecker {
  return {
    window: 1,
    check: (t) => Promise.resolve(checkTask(t, keepLines)),
    close: () => Promise.resolve(),
  };
}
