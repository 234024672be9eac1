import { DIGEST_FORMAT, DIGEST_FORMAT_V1, type Digest } from '../seal/digest.js';
import { KeyIndexBuilder, openIndex, type KeyIndex } from '../seal/key-index.js';
import { dateOf, timeKey } from '../seal/event-time.js';
import { digestKey, parseDataKey, parseStreamKey } from '../sink/keys.js';
import { SERVER_LSN_TEXT, tryParseLsn } from '../source/lsn.js';
import type { ArchivedLine, ArchivedRecord } from './archived.js';
import type { Finding } from './findings.js';

/**
 * What a signed digest says about its file, recomputed from the file's records, and the rules every
 * record kind must keep (docs/format.md, "Records"). A holder of the signing key can sign anything:
 * these checks make sure that what it signs at least agrees with the records it signs for, so a
 * digest cannot hide a file from a time-range query or misstate what the file holds. Pure.
 */

/** The record kinds the format defines. */
export const RECORD_OPS = ['insert', 'read', 'update', 'delete', 'truncate', 'gap', 'marker'] as const;
/** Why a record was archived from a snapshot instead of the stream. */
export const BACKFILL_REASONS = ['initial', 'slot-lost'] as const;
/** A record's commit date may lie this far after the day its digest says it was sealed: clocks of server and shipper differ. */
export const CLOCK_ALLOWANCE_MS = 10 * 60_000;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

export function checkRecords(d: Digest, lines: ArchivedLine[]): Finding[] {
  const check = new RecordsCheck(d);
  for (const { record } of lines) check.add(record);
  return check.finish();
}

/**
 * checkRecords one record at a time, in file order, so a caller need not keep the file's records
 * to check them: `verify` keeps a file's 10,000 parsed records only while they are young, and the
 * scavenges that copied them as they piled up took 884 ms of an 8.2 s `verify --full` (1M events).
 */
export class RecordsCheck {
  private readonly findings: Finding[] = [];
  private readonly where: string;
  private first: string | null = null;
  private last: string | null = null;
  private head: ArchivedRecord | null = null;
  private tail: ArchivedRecord | null = null;
  private inserts = 0;
  private backfilled = 0;
  /** the first backfilled insert whose event date is not its file's partition */
  private offPartition: ArchivedRecord | null = null;
  private readonly partition: string | undefined;
  private readonly index: KeyIndexBuilder | null;

  constructor(private readonly d: Digest) {
    this.where = d.object_key ?? digestKey(d.file_seq);
    this.partition = d.object_key ? parseDataKey(d.object_key)?.date : undefined;
    // Format 3: the index a query skips files by must be the one these records make, bit for bit.
    this.index = d.format === DIGEST_FORMAT && d.kind === 'data' && openIndex(d.index) !== null ? new KeyIndexBuilder() : null;
  }

  add(r: ArchivedRecord): void {
    const problem = recordProblem(r);
    if (problem) this.findings.push({ code: 'bad-record-field', where: this.where, message: `record ${r.seq}: ${problem}` });
    const at = r.occurred_at;
    if (typeof at === 'string') {
      if (this.first === null || at < this.first) this.first = at;
      if (this.last === null || at > this.last) this.last = at;
    }
    if (r.op === 'insert') {
      this.inserts++;
      if ('backfill' in r) {
        this.backfilled++;
        if (this.offPartition === null && typeof r.occurred_at === 'string' && utcDate(r.occurred_at) !== this.partition) this.offPartition = r;
      }
    }
    this.index?.addRecord(String(r.op), r.seq as number, r);
    this.head ??= r;
    this.tail = r;
  }

  finish(): Finding[] {
    const { d, findings } = this;
    const add = (code: string, message: string): void => {
      findings.push({ code, where: this.where, message });
    };
    const { first, last } = this;
    if (d.first_event_at !== first || d.last_event_at !== last) {
      add(
        'digest-event-range',
        `file ${d.file_seq}'s digest says its events run from ${d.first_event_at ?? 'none'} to ${d.last_event_at ?? 'none'}, ` +
          `its records from ${first ?? 'none'} to ${last ?? 'none'}: a time-range query would look for them in the wrong place`,
      );
    }
    findings.push(...this.backfillPartition());
    if (this.index !== null) {
      const recomputed = this.index.build();
      if (JSON.stringify(recomputed) !== JSON.stringify(d.index)) {
        add(
          'index-mismatch',
          `file ${d.file_seq}'s digest carries a key index that its records do not make (${indexDifference(d.index!, recomputed)}): ` +
            'a query skipping files by it could miss events of this file',
        );
      }
    }
    const { head, tail } = this;
    if (head && tail) {
      if (d.first_seq !== head.seq || d.last_seq !== tail.seq) {
        add('digest-sequence', `file ${d.file_seq}'s digest names records ${d.first_seq}..${d.last_seq}, the file holds ${head.seq}..${tail.seq}`);
      }
      if (!sameLsn(d.first_lsn, head.lsn) || !sameLsn(d.last_lsn, tail.lsn) || d.last_idx !== tail.idx) {
        add(
          'digest-positions',
          `file ${d.file_seq}'s digest says its records run from ${d.first_lsn} to ${d.last_lsn}#${d.last_idx}, ` +
            `they run from ${head.lsn} to ${tail.lsn}#${tail.idx}`,
        );
      }
    }
    return findings;
  }

  /**
   * Format 2: a file of backfill records holds rows of one UTC event date, filed under that date, and
   * nothing streamed. (Format 1 filed them under the day they were sealed: nothing to check there but
   * what checkDigestFields checks.)
   */
  private backfillPartition(): Finding[] {
    const d = this.d;
    if (d.format === DIGEST_FORMAT_V1 || !d.object_key) return [];
    if (this.backfilled === 0) return [];
    const where = d.object_key;
    if (this.backfilled !== this.inserts) {
      return [{ code: 'bad-record-field', where, message: `file ${d.file_seq} mixes backfilled and streamed events` }];
    }
    const dt = this.partition;
    if (!dt) return [];
    const off = this.offPartition;
    return off
      ? [
          {
            code: 'partition-mismatch',
            where,
            message: `file ${d.file_seq} of backfilled events is filed under ${dt}, but record ${off.seq} occurred at ${String(off.occurred_at)}: a time-range query would not look for it there`,
          },
        ]
      : [];
  }
}

function indexDifference(claimed: KeyIndex, actual: KeyIndex): string {
  const parts: string[] = [];
  for (const f of ['keys', 'bits', 'hashes', 'unattributed', 'tamper_or_gap'] as const) {
    if (claimed[f] !== actual[f]) parts.push(`${f} ${claimed[f]}, recomputed ${actual[f]}`);
  }
  if (claimed.bloom !== actual.bloom && parts.length === 0) parts.push('the filter differs');
  if (JSON.stringify(claimed.attestations) !== JSON.stringify(actual.attestations)) parts.push('its attestations differ');
  return parts.join('; ') || 'field order differs';
}

/** What is wrong with one record's own fields, or null. */
export function recordProblem(r: ArchivedRecord): string | null {
  if (!(RECORD_OPS as readonly string[]).includes(r.op)) return `unknown op ${JSON.stringify(r.op)}`;
  if (typeof r.lsn !== 'string' || !SERVER_LSN_TEXT.test(r.lsn)) return `lsn ${JSON.stringify(r.lsn)} is not an LSN in the server's spelling`;
  if (!Number.isSafeInteger(r.idx) || r.idx < -1) return `idx ${JSON.stringify(r.idx)} is not a position`;
  const tamper = r.op === 'update' || r.op === 'delete' || r.op === 'truncate';
  if (tamper && (r.tamper !== true || !('old' in r))) return `a ${r.op.toUpperCase()} of audit_log without "tamper":true and "old"`;
  if (!tamper && 'tamper' in r) return `a ${r.op} record marked as tamper`;
  if ((r.op === 'gap' || r.op === 'marker') && typeof r.reason !== 'string') return `a ${r.op} record without a reason`;
  if (r.op === 'gap' && r.idx !== -1) return 'a gap record with idx other than -1';
  // A read outside any transaction stands at -1 (before a transaction committing at the same LSN:
  // docs/format.md 3); archives written before that hold 0, which stays valid.
  if (r.op !== 'gap' && r.op !== 'read' && r.idx === -1) return `a ${r.op} record with idx -1`;
  if ('backfill' in r && !(BACKFILL_REASONS as readonly unknown[]).includes(r.backfill)) return `unknown backfill ${JSON.stringify(r.backfill)}`;
  if ('backfill' in r && r.op !== 'insert' && r.op !== 'marker') return `a ${r.op} record marked as backfill`;
  if (r.op === 'insert' && (typeof r.id !== 'string' || typeof r.occurred_at !== 'string')) return 'an audit event without id or occurred_at';
  if (typeof r.occurred_at === 'string' && utcDate(r.occurred_at) === null) return `occurred_at ${JSON.stringify(r.occurred_at)} is not a time`;
  return null;
}

/**
 * A digest's own fields must agree with each other: a heartbeat names no file; a data digest's
 * object key says its file sequence, its content hash, and a commit date partition that can hold
 * the file's events (an event never commits before it occurred, and a file is not sealed before
 * its commits, allowing for clocks). Needs only the digest, so it runs on files not read too.
 */
export function checkDigestFields(d: Digest): Finding[] {
  const where = digestKey(d.file_seq);
  const out: Finding[] = [];
  const add = (code: string, message: string): void => {
    out.push({ code, where, message });
  };
  if (typeof d.created_at !== 'string' || !ISO_UTC.test(d.created_at) || Number.isNaN(Date.parse(d.created_at))) {
    add('bad-digest-field', `digest ${d.file_seq}: created_at ${JSON.stringify(d.created_at)} is not a UTC time`);
  }
  for (const [field, value, nullable] of [
    ['ack_lsn', d.ack_lsn, false],
    ['first_lsn', d.first_lsn, true],
    ['last_lsn', d.last_lsn, true],
  ] as const) {
    if (nullable && value === null) continue;
    if (typeof value !== 'string' || !SERVER_LSN_TEXT.test(value))
      add('bad-digest-field', `digest ${d.file_seq}: ${field} ${JSON.stringify(value)} is not an LSN`);
  }
  if (d.kind === 'heartbeat') {
    if (
      d.object_key !== null ||
      d.object_bytes !== null ||
      d.object_sha256 !== null ||
      d.content_sha256 !== null ||
      d.first_seq !== null ||
      d.first_lsn !== null ||
      d.first_event_at !== null ||
      d.last_event_at !== null ||
      (d.format === DIGEST_FORMAT && d.index !== null)
    ) {
      add('bad-heartbeat', `heartbeat ${d.file_seq} names a file, records or events`);
    }
    return out;
  }
  if (d.kind !== 'data') {
    add('bad-digest-field', `digest ${d.file_seq} is of unknown kind ${JSON.stringify(d.kind)}`);
    return out;
  }
  if (typeof d.object_key !== 'string') {
    add('bad-digest-field', `data digest ${d.file_seq} names no object`);
    return out;
  }
  if (d.format === DIGEST_FORMAT && openIndex(d.index) === null) {
    add('bad-digest-field', `data digest ${d.file_seq} (format 3) carries no readable key index`);
  }
  const streamed = parseStreamKey(d.object_key);
  if (streamed) {
    if (streamed.fileSeq !== d.file_seq) add('object-key-mismatch', `digest ${d.file_seq} names the stream file of ${streamed.fileSeq}`);
    if (d.object_sha256 !== d.content_sha256) add('object-key-mismatch', `digest ${d.file_seq}: a streamed file's object hash must equal its content hash`);
    return out;
  }
  const parsed = parseDataKey(d.object_key);
  if (!parsed) {
    add('object-key-mismatch', `digest ${d.file_seq} names ${d.object_key}, which is not a data file name`);
    return out;
  }
  if (parsed.fileSeq !== d.file_seq) add('object-key-mismatch', `digest ${d.file_seq} names the data file of file ${parsed.fileSeq}`);
  if (!d.content_sha256 || !d.object_key.endsWith(`-${d.content_sha256.slice(0, 16)}.jsonl.gz`)) {
    add('object-key-mismatch', `digest ${d.file_seq} names an object whose hash part is not its content hash`);
  }
  const latest = d.last_event_at === null ? null : timeKey(d.last_event_at);
  if (latest !== null && parsed.date < dateOf(latest)) {
    add(
      'partition-mismatch',
      `file ${d.file_seq} is filed under commit date ${parsed.date}, before its events of ${dateOf(latest)}: ` + 'a time-range query would not look there',
    );
  }
  const sealedBy = new Date(Date.parse(d.created_at) + CLOCK_ALLOWANCE_MS).toISOString().slice(0, 10);
  if (parsed.date > sealedBy) {
    add('partition-mismatch', `file ${d.file_seq} is filed under commit date ${parsed.date}, after the day it was sealed (${d.created_at})`);
  }
  return out;
}

// The server's UTC text, "2026-11-28 19:45:53.554099+00": its date is its first ten characters.
const SERVER_UTC = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00$/;

/** The UTC date of a time text, or null when it is not a time. Per record, so the common form is read without parsing. */
function utcDate(text: string): string | null {
  if (SERVER_UTC.test(text)) return text.slice(0, 10);
  const k = timeKey(text);
  return k === null ? null : dateOf(k);
}

function sameLsn(a: string | null, b: string): boolean {
  const x = tryParseLsn(a);
  return x !== null && x === tryParseLsn(b);
}
