import type { Digest } from '../seal/digest.js';
import { addMs, dateOf } from '../seal/event-time.js';
import type { VerifyKey } from '../seal/keys.js';
import { digestKey, parseDataKey } from '../sink/keys.js';
import type { ArchiveReader } from '../sink/sink.js';
import { checkFile, type ArchivedLine } from '../verify/file.js';
import type { Finding } from '../verify/findings.js';
import { DigestWalk } from '../verify/links.js';
import { matches, mayHold, type Query } from './filter.js';

/** A data file whose bytes, records and signed digest all checked out. */
export interface VerifiedFile {
  digest: Digest;
  digestBytes: Buffer;
  body: Buffer;
  lines: ArchivedLine[];
}

export interface ScanOptions {
  keys: Map<string, VerifyKey>;
  query: Query;
  /**
   * Files sit in the partition of their commit date, which is never before an event's date but may
   * be after it (a long transaction, the ingester catching up): how far past --to to look.
   */
  maxCommitDelayMs: number;
  /** each verified file that holds matches, with them, in archive order */
  onMatches: (file: VerifiedFile, matched: ArchivedLine[]) => void | Promise<void>;
}

export interface ScanReport {
  /** commit-date partitions searched, inclusive; null: open-ended */
  partitions: { from: string | null; to: string | null };
  /** digests checked (signature and link), data files read and verified, and which */
  digests: number;
  filesRead: number;
  firstFile: number | null;
  lastFile: number | null;
  recordsRead: number;
  matches: number;
  keyIds: Set<string>;
  /** files that failed verification: none of their records were shown */
  failedFiles: Set<number>;
  findings: Finding[];
  notes: Finding[];
}

const PREFETCH = 8;

/**
 * Answer a query from the archive, verifying everything it shows. The data listing starts at the
 * query's first commit-date partition (S3 StartAfter) and stops after its last, so a three-month
 * question over a six-year archive lists three months. Between the files it lists, the walk checks
 * every digest (heartbeats, files of other dates) so the range is one unbroken, signed chain,
 * anchored at the digest just before it. One file in memory at a time.
 */
export async function scanArchive(reader: ArchiveReader, opts: ScanOptions): Promise<ScanReport> {
  const q = opts.query;
  const fromDate = q.from ? dateOf(q.from) : null;
  const toDate = q.to ? dateOf(addMs(q.to, opts.maxCommitDelayMs)) : null;
  const report: ScanReport = {
    partitions: { from: fromDate, to: toDate }, digests: 0, filesRead: 0, firstFile: null, lastFile: null,
    recordsRead: 0, matches: 0, keyIds: new Set(), failedFiles: new Set(), findings: [], notes: [],
  };
  const walk = new DigestWalk(opts.keys, 'anchor');
  const pending = new Map<number, Promise<Buffer | null>>();
  const fetchDigest = (seq: number, last: number): Promise<Buffer | null> => {
    for (let s = seq; s <= Math.min(seq + PREFETCH, last); s++) {
      if (!pending.has(s)) pending.set(s, reader.get(digestKey(s)));
    }
    const p = pending.get(seq)!;
    pending.delete(seq);
    return p;
  };

  const inPartitions = (key: string): boolean => {
    const date = parseDataKey(key)?.date;
    return date !== undefined && (fromDate === null || date >= fromDate) && (toDate === null || date <= toDate);
  };

  const visit = async (seq: number, last: number): Promise<void> => {
    const bytes = await fetchDigest(seq, last);
    if (!bytes && seq === last && !(await reader.exists(digestKey(seq + 1)))) {
      // A data file with no digest at the head: the shipper stopped between the two writes.
      report.notes.push({ code: 'unsealed-file', where: digestKey(seq), message: `file ${seq} was stored but its digest was not ` +
        'written yet (the shipper stopped between the two writes and seals those records again when it restarts): not shown' });
      return;
    }
    const step = walk.step(seq, bytes);
    report.digests++;
    report.findings.push(...step.findings);
    const d = step.digest;
    if (!d || d.kind !== 'data' || !d.object_key || !inPartitions(d.object_key) || !mayHold(d, q)) return;
    report.keyIds.add(d.key_id);
    const body = await reader.get(d.object_key);
    const file = checkFile(body, d, step.before);
    report.filesRead++;
    report.firstFile ??= seq;
    report.lastFile = seq;
    if (step.findings.length > 0 || file.findings.length > 0) {
      // Nothing from a file that failed is shown: not even the records before the break.
      report.findings.push(...file.findings);
      report.failedFiles.add(seq);
      return;
    }
    report.recordsRead += file.lines.length;
    const matched: ArchivedLine[] = [];
    for (const l of file.lines) {
      if (matches(l.record, q)) matched.push(l);
      else if (l.record.op !== 'insert' && l.record.op !== 'marker') noteSpecial(report, d, l);
    }
    if (matched.length > 0) {
      report.matches += matched.length;
      await opts.onMatches({ digest: d, digestBytes: bytes!, body: body!, lines: file.lines }, matched);
    }
  };

  let done: number | null = null;
  for await (const key of reader.list('data/', fromDate ? `data/dt=${fromDate}` : undefined)) {
    const parsed = parseDataKey(key);
    if (!parsed) continue; // not a data file name: `verify` reports such objects
    if (toDate !== null && parsed.date > toDate) break;
    if (done !== null && parsed.fileSeq <= done) continue; // already walked past it
    if (done === null) {
      // The digest before the range anchors the walk: the first file must continue its chain.
      done = parsed.fileSeq - 1;
      if (done > 0) await visit(done, done);
    }
    for (let s = done + 1; s <= parsed.fileSeq; s++) await visit(s, parsed.fileSeq);
    done = parsed.fileSeq;
  }
  return report;
}

/** Tamper attempts and gaps in the files read are part of the answer's context. */
function noteSpecial(report: ScanReport, d: Digest, l: ArchivedLine): void {
  const r = l.record;
  const what = r.op === 'gap'
    ? `a gap in streaming (${String(r.reason ?? 'unknown reason')}): events in it were recovered from audit_log where they still existed`
    : `a ${r.op.toUpperCase()} on audit_log itself (a tamper attempt, recorded, never applied)`;
  report.notes.push({ code: r.op === 'gap' ? 'gap' : 'tamper-attempt', where: d.object_key ?? digestKey(d.file_seq), message: `record ${r.seq} is ${what}` });
}
