import { gunzipSync } from 'node:zlib';
import { sha256Hex, type Digest } from '../seal/digest.js';
import { chainHash, openRecord } from '../seal/record.js';
import { digestKey, parseStreamKey } from '../sink/keys.js';
import { tryParseLsn } from '../source/lsn.js';
import type { Finding } from './findings.js';
import type { ChainState } from './links.js';
import { RecordsCheck } from './records.js';

export type { ArchivedLine, ArchivedRecord } from './archived.js';
import type { ArchivedLine, ArchivedRecord } from './archived.js';

export interface FileCheck {
  findings: Finding[];
  /** the records kept (every one unless `keep` said otherwise), in order; only meaningful when there are no findings */
  lines: ArchivedLine[];
  /** records read and checked (up to the first broken one) */
  records: number;
}

/** The JSON lines of a data file: gzip objects are unpacked, streamed files are the lines themselves. */
export function fileContent(d: Digest, body: Buffer): Buffer | string {
  if (d.object_key && parseStreamKey(d.object_key)) return body;
  try {
    return gunzipSync(body);
  } catch (err) {
    return `file ${d.file_seq} is not a complete gzip stream (${(err as Error).message})`;
  }
}

/**
 * Check one data file against its signed digest: stored bytes, gzip framing, content hash, every
 * record's chain hash from `before.chain`, record sequence, commit order, count and chain end.
 * Pure; the caller fetched `body` (null: missing).
 */
export function checkFile(body: Buffer | null, d: Digest, before: ChainState, keep?: (line: ArchivedLine) => boolean): FileCheck {
  const findings: Finding[] = [];
  const where = d.object_key ?? digestKey(d.file_seq);
  const add = (code: string, message: string): void => {
    findings.push({ code, where, message });
  };
  const lines: ArchivedLine[] = [];
  if (!body) {
    add('missing-file', `file ${d.file_seq} named by its digest is missing`);
    return { findings, lines, records: 0 };
  }
  if (sha256Hex(body) !== d.object_sha256 || body.length !== d.object_bytes) {
    add('file-altered', `file ${d.file_seq} does not match the hash its signed digest records`);
  }
  const content = fileContent(d, body);
  if (typeof content === 'string') {
    add('file-unreadable', content);
    return { findings, lines, records: 0 };
  }
  if (sha256Hex(content) !== d.content_sha256) {
    add('content-altered', `the records of file ${d.file_seq} do not match the content hash in its digest`);
  }
  const text = content.toString('utf8').split('\n');
  if (text[text.length - 1] === '') text.pop();
  let chain = before.chain;
  let expectSeq = before.recordSeq + 1;
  let pos = before.lastPos;
  let broken = false;
  let records = 0;
  const check = new RecordsCheck(d);
  for (const line of text) {
    const rec = openRecord(line);
    if (!rec) {
      add('bad-record', `record after ${expectSeq - 1} is not a chained record line`);
      broken = true;
      break;
    }
    const next = chainHash(chain as never, rec.body);
    if (next !== rec.claimed) {
      add('record-altered', `record ${expectSeq} of file ${d.file_seq} does not match its chain hash: it was changed, removed, or reordered`);
      broken = true;
      break;
    }
    chain = next;
    const fields = JSON.parse(rec.body) as ArchivedRecord;
    if (fields.seq !== expectSeq) {
      add('record-sequence-gap', `record ${expectSeq} expected, found ${fields.seq}`);
      broken = true;
      break;
    }
    // An unreadable lsn is the record's own finding (RecordsCheck): order is judged on the next one.
    const lsn = tryParseLsn(fields.lsn);
    const p = lsn === null ? pos : { lsn, idx: fields.idx };
    if (pos && p && p !== pos && (p.lsn < pos.lsn || (p.lsn === pos.lsn && p.idx <= pos.idx)) && fields.op !== 'gap') {
      add('lsn-order', `record ${expectSeq} is not after the record before it in commit order`);
    }
    pos = p;
    fields.chain = rec.claimed;
    check.add(fields);
    records++;
    const l = { record: fields, line };
    if (!keep || keep(l)) lines.push(l);
    expectSeq++;
  }
  if (!broken) {
    if (chain !== d.last_chain) add('record-chain-end', `file ${d.file_seq} ends on a chain hash its digest does not record`);
    if (records !== d.record_count) add('record-count', `file ${d.file_seq} holds ${records} records, its digest says ${d.record_count}`);
    if (d.first_seq !== before.recordSeq + 1)
      add('record-sequence-gap', `file ${d.file_seq} starts at record ${d.first_seq}, ${before.recordSeq + 1} expected`);
    findings.push(...check.finish());
  }
  return { findings, lines, records };
}
