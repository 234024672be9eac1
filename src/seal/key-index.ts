import { hash } from 'node:crypto';
import { ATTEST_ACTION, ATTEST_SOURCE } from '../capture/attest-record.js';

/**
 * A data file's key index (digest format 3, docs/format.md 4.4): a Bloom filter over the keys
 * compliance questions ask by, plus the few facts a search must not skip past. The signed digest
 * carries it, so a query that skips a file does so on a signed statement about that file, and
 * `verify` recomputes it from the file's records. Pure.
 *
 * A key is `<field>=<value>` (UTF-8) for every value below of every `insert` and `read` record, the
 * only records a query answers with; the field names contain no `=`, so a key names its field.
 */
export const KEY_FIELDS = ['customer', 'app_user', 'db_user', 'table', 'row'] as const;
export type KeyField = (typeof KEY_FIELDS)[number];

/**
 * 20 bits per key and 14 hash positions: a false positive rate of about 7 in 100,000 per key
 * looked up (a skipped-file check costs nothing; a false positive costs one file read). At 1% (10
 * bits) a query for a key in 0.1% of the files would read ten times more files that do not hold it
 * than files that do.
 */
export const BITS_PER_KEY = 20;
export const HASHES = 14;

/** An attestation of the capture configuration, as the index lists it (section 3.4). */
export interface IndexedAttestation {
  seq: number;
  occurred_at: string | null;
  /** null when the attestation cannot be read (verify reports bad-attestation) */
  interval_s: number | null;
  config_sha256: string | null;
}

/** Field order is fixed: it is part of the signed digest line. */
export interface KeyIndex {
  /** distinct keys */
  keys: number;
  /** filter size in bits (BITS_PER_KEY × keys) and hash positions per key */
  bits: number;
  hashes: number;
  /** the filter, bit j in byte j >> 3 at (1 << (j & 7)), base64 */
  bloom: string;
  /** insert/read records whose app_context is "unknown": they may be anyone's */
  unattributed: number;
  /** update, delete, truncate and gap records: a search reads every file that has one */
  tamper_or_gap: number;
  attestations: IndexedAttestation[];
}

type Fields = Record<string, unknown>;
const str = (v: unknown): v is string => typeof v === 'string';

/** The index a verifier recomputes from a file's records (docs/format.md 4.4). */
export function indexOf(records: Iterable<Fields & { op: unknown; seq: unknown }>): KeyIndex {
  const b = new KeyIndexBuilder();
  for (const r of records) b.addRecord(String(r.op), r.seq as number, r);
  return b.build();
}

/** Every name a record's table goes by: a query's --table matches one of them exactly. */
export function tableNames(r: Fields): string[] {
  const out: string[] = [];
  if (str(r.table_name)) out.push(r.table_name);
  if (str(r.schema_name) && str(r.table_name)) out.push(`${r.schema_name}.${r.table_name}`);
  if (str(r.relation_name)) {
    out.push(r.relation_name);
    // a partition's name without its schema: `--table patients_2026` finds `clinic.patients_2026`
    const dot = r.relation_name.lastIndexOf('.');
    if (dot >= 0) out.push(r.relation_name.slice(dot + 1));
  }
  return out;
}

/** The keys of one record (docs/format.md 4.4); none for records a query never answers with. */
export function recordKeys(r: Fields, op: unknown = r.op): string[] {
  if (op !== 'insert' && op !== 'read') return [];
  const out: string[] = [];
  const add = (field: KeyField, v: unknown): void => {
    if (str(v)) out.push(`${field}=${v}`);
  };
  add('customer', r.app_customer_id);
  add('app_user', r.app_user_id);
  add('db_user', r.session_user_name);
  add('db_user', r.current_role_name);
  for (const t of tableNames(r)) add('table', t);
  add('row', r.row_id);
  add('row', r.old_row_id);
  return out;
}

/** Bit positions of a key: SHA-256 of its UTF-8, h1 and h2 its first two big-endian 32-bit words, (h1 + i·h2) mod bits. */
function positions(key: string, bits: number, hashes: number, each: (bit: number) => boolean | void): boolean {
  const d = hash('sha256', key, 'buffer');
  const h1 = d.readUInt32BE(0);
  const h2 = d.readUInt32BE(4);
  for (let i = 0; i < hashes; i++) if (each((h1 + i * h2) % bits) === false) return false;
  return true;
}

/**
 * The audit_log columns the shipper's raw path hands over by position (slot), in this order
 * (src/seal/raw-record.ts records where each lies in the message).
 */
export const KEY_COLUMNS = [
  'app_customer_id',
  'app_user_id',
  'session_user_name',
  'current_role_name',
  'row_id',
  'old_row_id',
  'schema_name',
  'table_name',
  'relation_name',
  'app_context',
  'source',
  'action',
  'statement',
  'occurred_at',
] as const;
/** the key field of slots 0..5; the table names (6..8) are made together */
const SLOT_FIELD: readonly KeyField[] = ['customer', 'app_user', 'db_user', 'db_user', 'row', 'row'];
const TABLE_SLOTS = [6, 7, 8];
const APP_CONTEXT = 9;
const SOURCE = 10;
const ACTION = 11;
const UNKNOWN = Buffer.from('unknown');
const ATTEST_SOURCE_BYTES = Buffer.from(ATTEST_SOURCE);
const ATTEST_ACTION_BYTES = Buffer.from(ATTEST_ACTION);

function sameBytes(buf: Uint8Array, start: number, end: number, other: Uint8Array | null): boolean {
  if (other === null || other.length !== end - start) return false;
  for (let i = 0; i < other.length; i++) if (buf[start + i] !== other[i]) return false;
  return true;
}

/** Collects a file's keys and facts while it is written; build() once, when it is sealed. */
export class KeyIndexBuilder {
  private readonly keys = new Set<string>();
  unattributed = 0;
  tamperOrGap = 0;
  private readonly attestations: IndexedAttestation[] = [];
  /** the last value seen per slot: users, tables and customers repeat, so most records add nothing new */
  private readonly seen: (Uint8Array | null)[] = KEY_COLUMNS.map(() => null);

  /**
   * An insert as the raw path saw it: `at` holds start and end of each KEY_COLUMNS slot's text in
   * `buf` (-1: NULL). The same keys as addRecord() of the parsed line (a test holds them equal).
   */
  addRaw(buf: Buffer, at: Int32Array, seq: number): void {
    for (let slot = 0; slot < SLOT_FIELD.length; slot++) {
      const start = at[2 * slot]!;
      if (start < 0) continue;
      const end = at[2 * slot + 1]!;
      if (slot < 4) {
        if (sameBytes(buf, start, end, this.seen[slot]!)) continue;
        this.seen[slot] = new Uint8Array(buf.subarray(start, end));
      }
      this.keys.add(`${SLOT_FIELD[slot]!}=${buf.toString('utf8', start, end)}`);
    }
    let tableChanged = false;
    for (const slot of TABLE_SLOTS) {
      const start = at[2 * slot]!;
      const end = at[2 * slot + 1]!;
      const same = start < 0 ? this.seen[slot] === null : sameBytes(buf, start, end, this.seen[slot]!);
      if (same) continue;
      tableChanged = true;
      this.seen[slot] = start < 0 ? null : new Uint8Array(buf.subarray(start, end));
    }
    if (tableChanged) {
      const text = (slot: number): string | null => (at[2 * slot]! < 0 ? null : buf.toString('utf8', at[2 * slot]!, at[2 * slot + 1]!));
      for (const t of tableNames({ schema_name: text(6), table_name: text(7), relation_name: text(8) })) this.keys.add(`table=${t}`);
    }
    if (at[2 * APP_CONTEXT]! >= 0 && sameBytes(buf, at[2 * APP_CONTEXT]!, at[2 * APP_CONTEXT + 1]!, UNKNOWN)) this.unattributed++;
    if (
      at[2 * SOURCE]! >= 0 &&
      sameBytes(buf, at[2 * SOURCE]!, at[2 * SOURCE + 1]!, ATTEST_SOURCE_BYTES) &&
      at[2 * ACTION]! >= 0 &&
      sameBytes(buf, at[2 * ACTION]!, at[2 * ACTION + 1]!, ATTEST_ACTION_BYTES)
    ) {
      const text = (slot: number): string | null => (at[2 * slot]! < 0 ? null : buf.toString('utf8', at[2 * slot]!, at[2 * slot + 1]!));
      this.attestations.push(indexedAttestation({ statement: text(12), occurred_at: text(13) }, seq));
    }
  }

  add(key: string): void {
    this.keys.add(key);
  }

  /** One record: its op, sequence number and flat fields (the row's columns, or a parsed line). */
  addRecord(op: string, seq: number, r: Fields | null): void {
    if (op === 'update' || op === 'delete' || op === 'truncate' || op === 'gap') this.tamperOrGap++;
    if ((op !== 'insert' && op !== 'read') || r === null) return;
    for (const k of recordKeys(r, op)) this.keys.add(k);
    if (r.app_context === 'unknown') this.unattributed++;
    if (op === 'insert' && r.source === ATTEST_SOURCE && r.action === ATTEST_ACTION) this.attestations.push(indexedAttestation(r, seq));
  }

  build(): KeyIndex {
    const n = this.keys.size;
    const bits = n * BITS_PER_KEY;
    const filter = Buffer.alloc(Math.ceil(bits / 8));
    for (const k of this.keys) {
      positions(k, bits, HASHES, (b) => {
        filter[b >> 3] = filter[b >> 3]! | (1 << (b & 7));
      });
    }
    return {
      keys: n,
      bits,
      hashes: HASHES,
      bloom: filter.toString('base64'),
      unattributed: this.unattributed,
      tamper_or_gap: this.tamperOrGap,
      attestations: this.attestations,
    };
  }
}

/** An attestation record's entry: the statement's own interval and configuration hash. */
export function indexedAttestation(r: Fields, seq: number): IndexedAttestation {
  let interval: number | null = null;
  let config: string | null = null;
  try {
    const a: unknown = str(r.statement) ? JSON.parse(r.statement) : null;
    if (a !== null && typeof a === 'object') {
      const { interval_s: i, config_sha256: c } = a as Record<string, unknown>;
      if (typeof i === 'number' && str(c)) [interval, config] = [i, c];
    }
  } catch {
    // unreadable: listed with nulls, as verify reads it (bad-attestation)
  }
  return { seq, occurred_at: str(r.occurred_at) ? r.occurred_at : null, interval_s: interval, config_sha256: config };
}

/** The filter of a parsed index, decoded once per digest. */
export interface OpenIndex {
  index: KeyIndex;
  filter: Buffer;
}

/** Checks an index's shape; null when it is not one (a reader then reads the file). */
export function openIndex(v: unknown): OpenIndex | null {
  if (v === null || typeof v !== 'object') return null;
  const i = v as KeyIndex;
  const whole = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!whole(i.keys) || !whole(i.bits) || !whole(i.hashes) || i.hashes < 1 || i.hashes > 64 || typeof i.bloom !== 'string') return null;
  if (!whole(i.unattributed) || !whole(i.tamper_or_gap) || !Array.isArray(i.attestations)) return null;
  const filter = Buffer.from(i.bloom, 'base64');
  if (filter.length !== Math.ceil(i.bits / 8) || (i.keys > 0 && i.bits === 0)) return null;
  return { index: i, filter };
}

/** Whether the file may hold `field=value`: false only when the filter rules it out. */
export function mayContain(o: OpenIndex, field: KeyField, value: string): boolean {
  if (o.index.bits === 0) return false; // no keys at all
  return positions(`${field}=${value}`, o.index.bits, o.index.hashes, (b) => (o.filter[b >> 3]! & (1 << (b & 7))) !== 0);
}
