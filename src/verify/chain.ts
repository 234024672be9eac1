import { openRecord } from '../seal/record.js';
import { sha256Hex, type Digest } from '../seal/digest.js';
import type { VerifyKey } from '../seal/keys.js';
import { digestKey } from '../sink/keys.js';
import type { ArchiveReader } from '../sink/sink.js';
import { checkFile, type ArchivedRecord } from './file.js';
import type { Finding } from './findings.js';
import { DigestWalk } from './links.js';
import { objectKeyOf, ReadAhead } from './read-ahead.js';

/** Files fetched ahead of the one being checked. */
const LOOK_AHEAD = 2;

export type { Finding } from './findings.js';
export type { ArchivedRecord } from './file.js';

export interface ChainReport {
  /** data object keys named by a digest that verified */
  referenced: Set<string>;
  /** the data object each verified file sequence names */
  objectOf: Map<number, string>;
  files: number;
  /** data files whose bytes this run did not read (incremental mode) */
  skipped: number;
  heartbeats: number;
  firstEventAt: string | null;
  lastEventAt: string | null;
  records: number;
  head: Digest | null;
  findings: Finding[];
}

export interface ChainOptions {
  keys: Map<string, VerifyKey>;
  /**
   * Incremental runs: data files of earlier sequences are taken as verified by a previous run (their
   * signed digests still are checked, link by link) unless sampled; `fullFrom` and later are read.
   */
  fullFrom?: number;
  sample?: Set<number>;
  /** the head a previous run verified: its digest must be unchanged, or everything is read */
  trusted?: { fileSeq: number; digestSha256: string };
  /** every digest whose signature verified, in order */
  onDigest?: (d: Digest) => void;
  /** after each digest: how far the walk is */
  onProgress?: (done: number, total: number) => void;
  /** called with each file's records once they verified (query reads through this) */
  onRecords?: (records: ArchivedRecord[], digest: Digest) => void | Promise<void>;
}

/** (seq, claimed chain hash) of every line, in order; null when a line is not a record. */
export function lineChains(content: Buffer): { seq: number; chain: string }[] | null {
  const out: { seq: number; chain: string }[] = [];
  for (const line of content.toString('utf8').split('\n')) {
    if (!line) continue;
    const rec = openRecord(line);
    if (!rec) return null;
    out.push({ seq: (JSON.parse(rec.body) as { seq: number }).seq, chain: rec.claimed });
  }
  return out;
}

/**
 * Walk the chain from file 1 to the newest digest, checking every link (DigestWalk) and every
 * data file's bytes and records (checkFile). Reads one file at a time, so memory does not grow
 * with the archive.
 */
export async function verifyChain(reader: ArchiveReader, opts: ChainOptions): Promise<ChainReport> {
  const findings: Finding[] = [];
  let fullFrom = opts.fullFrom ?? 1;
  const report: ChainReport = { referenced: new Set(), objectOf: new Map(), files: 0, skipped: 0, heartbeats: 0, firstEventAt: null, lastEventAt: null, records: 0, head: null, findings };

  const listed = new Set<number>();
  for await (const key of reader.list('digests/')) {
    const m = /^digests\/(\d{12})\.digest$/.exec(key);
    if (m) listed.add(Number(m[1]));
    else findings.push({ code: 'unexpected-object', where: key, message: 'an object in the digest folder that is not a digest' });
  }
  const maxSeq = listed.size ? Math.max(...listed) : 0;
  if (opts.trusted) {
    // Digests link by hash, so if the head a previous run accepted is unchanged, so is all before it.
    const t = await reader.get(digestKey(opts.trusted.fileSeq));
    if (!t || sha256Hex(t) !== opts.trusted.digestSha256) {
      findings.push({ code: 'trusted-state-mismatch', where: digestKey(opts.trusted.fileSeq), message:
        `digest ${opts.trusted.fileSeq} is ${t ? 'not the one' : 'missing, unlike'} the previous verification accepted: every file is checked again` });
      fullFrom = 1;
    }
  }
  const walk = new DigestWalk(opts.keys);
  const ahead = new ReadAhead(reader, 2 * LOOK_AHEAD);
  const readsData = (seq: number): boolean => seq >= fullFrom || opts.sample?.has(seq) === true;
  const plan = (seq: number): void => {
    if (seq > maxSeq || !listed.has(seq)) return;
    void ahead.start(digestKey(seq))?.then((b) => {
      const key = objectKeyOf(b);
      if (key && readsData(seq)) ahead.start(key);
    }, () => undefined);
  };
  for (let next = 1; next <= LOOK_AHEAD; next++) plan(next);
  for (let seq = 1; seq <= maxSeq; seq++) {
    opts.onProgress?.(seq, maxSeq);
    plan(seq + LOOK_AHEAD); // each file planned once, LOOK_AHEAD files before its turn
    const step = walk.step(seq, listed.has(seq) ? await ahead.take(digestKey(seq)) : null);
    findings.push(...step.findings);
    const d = step.digest;
    if (!d) continue;
    report.head = d;
    opts.onDigest?.(d);
    if (d.kind === 'heartbeat') {
      report.heartbeats++;
      continue;
    }
    report.files++;
    if (d.object_key) {
      report.referenced.add(d.object_key);
      report.objectOf.set(seq, d.object_key);
    }
    if (d.first_event_at && (!report.firstEventAt || d.first_event_at < report.firstEventAt)) report.firstEventAt = d.first_event_at;
    if (d.last_event_at && (!report.lastEventAt || d.last_event_at > report.lastEventAt)) report.lastEventAt = d.last_event_at;
    if (!readsData(seq)) {
      // Verified by an earlier run and unchanged (its signed digest and links were just checked again).
      report.skipped++;
      report.records += d.record_count;
      continue;
    }
    const file = checkFile(d.object_key ? await ahead.take(d.object_key) : null, d, step.before);
    findings.push(...file.findings);
    report.records += file.lines.length;
    if (file.findings.length === 0 && opts.onRecords) await opts.onRecords(file.lines.map((l) => l.record), d);
  }
  return report;
}
