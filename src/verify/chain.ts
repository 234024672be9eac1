import { gunzipSync } from 'node:zlib';
import { openDigest, sha256Hex, type Digest } from '../seal/digest.js';
import type { VerifyKey } from '../seal/keys.js';
import { chainHash, GENESIS_CHAIN, openRecord } from '../seal/record.js';
import { digestKey } from '../sink/keys.js';
import type { ArchiveReader } from '../sink/sink.js';
import { parseLsn } from '../source/lsn.js';

/** One thing wrong, said so an auditor can act on it. `where` is an archive key. */
export interface Finding {
  code: string;
  where: string;
  message: string;
}

/** A record as archived: the line's fields, with its sequence and chain hash. */
export type ArchivedRecord = Record<string, unknown> & { seq: number; lsn: string; idx: number; op: string; chain: string };

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

/**
 * Walk the chain from file 1 to the newest digest, checking every link: signature, previous
 * digest hash, sequence numbers, LSN order, stored bytes, gzip framing, every record's chain hash.
 * Reads one file at a time, so memory does not grow with the archive.
 */
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

export async function verifyChain(reader: ArchiveReader, opts: ChainOptions): Promise<ChainReport> {
  const findings: Finding[] = [];
  let fullFrom = opts.fullFrom ?? 1;
  const report: ChainReport = { referenced: new Set(), objectOf: new Map(), files: 0, skipped: 0, heartbeats: 0, firstEventAt: null, lastEventAt: null, records: 0, head: null, findings };
  const add = (code: string, where: string, message: string): void => { findings.push({ code, where, message }); };
  let prevDigestSha: string | null = null;
  let prevDigest: Digest | null = null;
  let chain = GENESIS_CHAIN as string;
  let recordSeq = 0;
  let lastPos: { lsn: bigint; idx: number } | null = null;

  const listed = new Set<number>();
  for await (const key of reader.list('digests/')) {
    const m = /^digests\/(\d{12})\.digest$/.exec(key);
    if (m) listed.add(Number(m[1]));
    else add('unexpected-object', key, 'an object in the digest folder that is not a digest');
  }
  const maxSeq = listed.size ? Math.max(...listed) : 0;
  if (opts.trusted) {
    // Digests link by hash, so if the head a previous run accepted is unchanged, so is all before it.
    const t = await reader.get(digestKey(opts.trusted.fileSeq));
    if (!t || sha256Hex(t) !== opts.trusted.digestSha256) {
      add('trusted-state-mismatch', digestKey(opts.trusted.fileSeq),
        `digest ${opts.trusted.fileSeq} is ${t ? 'not the one' : 'missing, unlike'} the previous verification accepted: every file is checked again`);
      fullFrom = 1;
    }
  }
  for (let seq = 1; seq <= maxSeq; seq++) {
    opts.onProgress?.(seq, maxSeq);
    const key = digestKey(seq);
    const bytes = listed.has(seq) ? await reader.get(key) : null;
    if (!bytes) {
      add('missing-digest', key, `digest ${seq} is missing: the chain has a gap between files ${seq - 1} and ${seq + 1}`);
      prevDigestSha = null;
      prevDigest = null;
      continue;
    }
    const opened = openDigest(bytes, opts.keys);
    if (!opened.ok) {
      add('bad-digest', key, opened.problem);
      prevDigestSha = sha256Hex(bytes);
      prevDigest = null;
      continue;
    }
    const d = opened.digest;
    report.head = d;
    opts.onDigest?.(d);

    if (d.file_seq !== seq) add('wrong-sequence', key, `digest at position ${seq} says it is file ${d.file_seq}`);
    if (seq === 1 ? d.prev_digest_sha256 !== null : prevDigestSha !== null && d.prev_digest_sha256 !== prevDigestSha) {
      add('broken-digest-link', key, `digest ${seq} does not follow digest ${seq - 1}: its previous-digest hash does not match`);
    }
    if (prevDigest && (d.system_identifier !== prevDigest.system_identifier || d.slot !== prevDigest.slot)) {
      add('source-changed', key, `the source changed from system ${prevDigest.system_identifier} slot ${prevDigest.slot} to ` +
        `system ${d.system_identifier} slot ${d.slot}: events in between were not streamed`);
    }
    if (d.prev_chain !== chain && prevDigest) {
      add('broken-record-chain', key, `file ${seq} does not continue the record chain where file ${seq - 1} ended`);
    }
    chain = d.prev_chain;
    if (d.kind === 'heartbeat') {
      report.heartbeats++;
      if (d.last_chain !== d.prev_chain || d.record_count !== 0) add('bad-heartbeat', key, 'a heartbeat that claims records');
      if (d.last_seq !== null && d.last_seq !== recordSeq && prevDigest) {
        add('record-sequence-gap', key, `heartbeat says the chain stands at record ${d.last_seq}, but the files before end at ${recordSeq}`);
      }
    } else if (seq < fullFrom && !opts.sample?.has(seq)) {
      // Verified by an earlier run and unchanged (its signed digest and links were just checked again).
      report.files++;
      report.skipped++;
      if (d.object_key) {
        report.referenced.add(d.object_key);
        report.objectOf.set(seq, d.object_key);
      }
      chain = d.last_chain;
      recordSeq = d.last_seq ?? recordSeq;
      if (d.first_event_at && (!report.firstEventAt || d.first_event_at < report.firstEventAt)) report.firstEventAt = d.first_event_at;
      if (d.last_event_at && (!report.lastEventAt || d.last_event_at > report.lastEventAt)) report.lastEventAt = d.last_event_at;
      lastPos = d.last_lsn === null ? lastPos : { lsn: parseLsn(d.last_lsn), idx: d.last_idx ?? 0 };
      report.records += d.record_count;
    } else {
      report.files++;
      if (d.object_key) {
        report.referenced.add(d.object_key);
        report.objectOf.set(seq, d.object_key);
      }
      if (d.first_event_at && (!report.firstEventAt || d.first_event_at < report.firstEventAt)) report.firstEventAt = d.first_event_at;
      if (d.last_event_at && (!report.lastEventAt || d.last_event_at > report.lastEventAt)) report.lastEventAt = d.last_event_at;
      const problems = await checkDataFile(reader, d, chain, recordSeq, lastPos, opts);
      for (const p of problems.findings) add(p.code, p.where, p.message);
      chain = problems.chain;
      recordSeq = problems.recordSeq;
      lastPos = problems.lastPos;
      report.records += problems.count;
    }
    prevDigestSha = sha256Hex(bytes);
    prevDigest = d;
  }
  return report;
}

async function checkDataFile(reader: ArchiveReader, d: Digest, chainIn: string, seqIn: number,
  posIn: { lsn: bigint; idx: number } | null, opts: ChainOptions): Promise<{
  findings: Finding[]; chain: string; recordSeq: number; lastPos: { lsn: bigint; idx: number } | null; count: number;
}> {
  const findings: Finding[] = [];
  const where = d.object_key ?? digestKey(d.file_seq);
  const out = { findings, chain: d.last_chain as string, recordSeq: d.last_seq ?? seqIn, lastPos: posIn, count: 0 };
  const body = d.object_key ? await reader.get(d.object_key) : null;
  if (!body) {
    findings.push({ code: 'missing-file', where, message: `file ${d.file_seq} named by its digest is missing` });
    return out;
  }
  if (sha256Hex(body) !== d.object_sha256 || body.length !== d.object_bytes) {
    findings.push({ code: 'file-altered', where, message: `file ${d.file_seq} does not match the hash its signed digest records` });
  }
  let content: Buffer;
  try {
    content = gunzipSync(body);
  } catch (err) {
    findings.push({ code: 'file-unreadable', where, message: `file ${d.file_seq} is not a complete gzip stream (${(err as Error).message})` });
    return out;
  }
  if (sha256Hex(content) !== d.content_sha256) {
    findings.push({ code: 'content-altered', where, message: `the records of file ${d.file_seq} do not match the content hash in its digest` });
  }
  const lines = content.toString('utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let chain = chainIn;
  let expectSeq = seqIn + 1;
  let pos = posIn;
  const records: ArchivedRecord[] = [];
  let broken = false;
  for (const line of lines) {
    const rec = openRecord(line);
    if (!rec) {
      findings.push({ code: 'bad-record', where, message: `record after ${expectSeq - 1} is not a chained record line` });
      broken = true;
      break;
    }
    const next = chainHash(chain as never, rec.body);
    if (next !== rec.claimed) {
      findings.push({ code: 'record-altered', where, message: `record ${expectSeq} of file ${d.file_seq} does not match its chain hash: it was changed, removed, or reordered` });
      broken = true;
      break;
    }
    chain = next;
    const fields = JSON.parse(rec.body) as ArchivedRecord;
    if (fields.seq !== expectSeq) {
      findings.push({ code: 'record-sequence-gap', where, message: `record ${expectSeq} expected, found ${fields.seq}` });
      broken = true;
      break;
    }
    const p = { lsn: parseLsn(fields.lsn), idx: fields.idx };
    if (pos && (p.lsn < pos.lsn || (p.lsn === pos.lsn && p.idx <= pos.idx)) && fields.op !== 'gap') {
      findings.push({ code: 'lsn-order', where, message: `record ${expectSeq} is not after the record before it in commit order` });
    }
    pos = p;
    records.push({ ...fields, chain: rec.claimed });
    expectSeq++;
  }
  if (!broken) {
    if (chain !== d.last_chain) findings.push({ code: 'record-chain-end', where, message: `file ${d.file_seq} ends on a chain hash its digest does not record` });
    if (records.length !== d.record_count) findings.push({ code: 'record-count', where, message: `file ${d.file_seq} holds ${records.length} records, its digest says ${d.record_count}` });
    if (d.first_seq !== seqIn + 1) findings.push({ code: 'record-sequence-gap', where, message: `file ${d.file_seq} starts at record ${d.first_seq}, ${seqIn + 1} expected` });
  }
  out.lastPos = pos;
  out.count = records.length;
  if (findings.length === 0 && opts.onRecords) await opts.onRecords(records, d);
  return out;
}
