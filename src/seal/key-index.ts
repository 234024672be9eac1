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

/**
 * MurmurHash3 (x86, 32-bit) of `n` bytes of `b` with `seed`: the hash Guava's and most Bloom
 * filters use, as published (SMHasher). SHA-256 here cost 1.7 us per key against 0.3 us for two of
 * these, and a busy file has about two new keys per record (measured on the synthetic hospital of
 * `npm run bench`); the filter needs spread, not collision resistance (the signature protects it).
 */
export function murmur3(b: Uint8Array, n: number, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed | 0;
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, c2);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = n & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= b[whole + 2]! << 16;
    if (rest >= 2) k ^= b[whole + 1]! << 8;
    k ^= b[whole]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, c2);
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

let scratch = Buffer.allocUnsafe(4096);
/** h1 and h2 of the key in scratch[0, n) */
const pair = new Uint32Array(2);

function hashScratch(n: number): void {
  pair[0] = murmur3(scratch, n, 0);
  pair[1] = murmur3(scratch, n, pair[0]!);
}

/** The key `<prefix><text>` (prefix: `field=` as bytes) into scratch; its length. */
function writeKey(prefix: Uint8Array, text: string): number {
  if (prefix.length + text.length * 3 > scratch.length) scratch = Buffer.allocUnsafe(prefix.length + text.length * 3);
  const out = scratch;
  for (let i = 0; i < prefix.length; i++) out[i] = prefix[i]!;
  // ASCII (ids, names) is copied by hand: Buffer.write's call into the runtime cost more than the hashing of a short key
  let at = prefix.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return prefix.length + out.write(text, prefix.length, 'utf8');
    out[at++] = c;
  }
  return at;
}

/** Bit positions of a key: h1 = murmur3(key, 0), h2 = murmur3(key, h1) over its UTF-8; bit (h1 + i·h2) mod bits. */
function positions(key: string, bits: number, hashes: number, each: (bit: number) => boolean | void): boolean {
  hashScratch(writeKey(EMPTY, key));
  const h1 = pair[0]!;
  const h2 = pair[1]!;
  for (let i = 0; i < hashes; i++) if (each((h1 + i * h2) % bits) === false) return false;
  return true;
}
const EMPTY = new Uint8Array(0);

/**
 * The distinct (h1, h2) pairs of a file's keys, in an open-addressing table of 32-bit words: keys
 * are hashed from the stream's bytes as they arrive and never become strings (a Set of key strings
 * cost the shipper's raw path about 1.5 us per record). Keys with equal h1 and h2 set equal bits,
 * so counting them once loses nothing (docs/format.md 4.4).
 */
class PairSet {
  private table = new Uint32Array(2 * 1024);
  private mask = 1023;
  size = 0;
  /** (0, 0) marks an empty slot; a key hashing to it is kept here */
  private zero = false;

  add(h1: number, h2: number): void {
    if (h1 === 0 && h2 === 0) {
      if (!this.zero) this.size++;
      this.zero = true;
      return;
    }
    const t = this.table;
    for (let i = h1 & this.mask; ; i = (i + 1) & this.mask) {
      const a = t[2 * i]!;
      const b = t[2 * i + 1]!;
      if (a === h1 && b === h2) return;
      if (a === 0 && b === 0) {
        t[2 * i] = h1;
        t[2 * i + 1] = h2;
        if (++this.size * 2 > this.mask) this.grow();
        return;
      }
    }
  }

  forEach(fn: (h1: number, h2: number) => void): void {
    if (this.zero) fn(0, 0);
    const t = this.table;
    for (let i = 0; i < t.length; i += 2) if (t[i] !== 0 || t[i + 1] !== 0) fn(t[i]!, t[i + 1]!);
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.mask = this.mask * 2 + 1;
    this.size = this.zero ? 1 : 0;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0 || old[i + 1] !== 0) this.add(old[i]!, old[i + 1]!);
  }
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
/** `field=` of slots 0..5, as bytes; the table names (6..8) are made together */
const PREFIX = (field: KeyField): Uint8Array => new Uint8Array(Buffer.from(`${field}=`));
const SLOT_PREFIX: readonly Uint8Array[] = (['customer', 'app_user', 'db_user', 'db_user', 'row', 'row'] as const).map(PREFIX);
const TABLE_PREFIX = PREFIX('table');
const TABLE_SLOTS = [6, 7, 8];
const APP_CONTEXT = 9;
const SOURCE = 10;
const ACTION = 11;
const UNKNOWN = Buffer.from('unknown');
const ATTEST_SOURCE_BYTES = Buffer.from(ATTEST_SOURCE);
const ATTEST_ACTION_BYTES = Buffer.from(ATTEST_ACTION);

function sameBytes(buf: Uint8Array, start: number, end: number, other: Uint8Array): boolean {
  if (other.length !== end - start) return false;
  for (let i = 0; i < other.length; i++) if (buf[start + i] !== other[i]) return false;
  return true;
}

/** The last value of one column, kept in a buffer of its own (no allocation per record). */
class Memo {
  private bytes = new Uint8Array(64);
  /** -1: NULL; -2: nothing seen yet */
  private length = -2;

  /** Remember buf[start, end) (start < 0: NULL); whether it differs from the value before. */
  update(buf: Uint8Array, start: number, end: number): boolean {
    const n = start < 0 ? -1 : end - start;
    if (n === this.length) {
      let same = true;
      for (let i = 0; i < n; i++) {
        if (buf[start + i] !== this.bytes[i]) {
          same = false;
          break;
        }
      }
      if (same) return false;
    }
    if (n > this.bytes.length) this.bytes = new Uint8Array(n * 2);
    for (let i = 0; i < n; i++) this.bytes[i] = buf[start + i]!;
    this.length = n;
    return true;
  }
}

/** Collects a file's keys and facts while it is written; build() once, when it is sealed. */
export class KeyIndexBuilder {
  private readonly keys = new PairSet();
  unattributed = 0;
  tamperOrGap = 0;
  private readonly attestations: IndexedAttestation[] = [];
  /** the last value seen per slot: users, tables and customers repeat, so most records add nothing new */
  private readonly seen: Memo[] = KEY_COLUMNS.map(() => new Memo());
  private readonly lastValue: unknown[] = [undefined, undefined, undefined, undefined];
  private lastTable: unknown[] | null = null;

  private addText(prefix: Uint8Array, text: string): void {
    hashScratch(writeKey(prefix, text));
    this.keys.add(pair[0]!, pair[1]!);
  }

  /** The key `<prefix><buf[start, end)>`, hashed from the bytes. */
  private addBytes(prefix: Uint8Array, buf: Uint8Array, start: number, end: number): void {
    const n = prefix.length + end - start;
    if (n > scratch.length) scratch = Buffer.allocUnsafe(n);
    const out = scratch;
    for (let i = 0; i < prefix.length; i++) out[i] = prefix[i]!;
    for (let i = start, j = prefix.length; i < end; i++, j++) out[j] = buf[i]!;
    hashScratch(n);
    this.keys.add(pair[0]!, pair[1]!);
  }

  /**
   * An insert as the raw path saw it: `at` holds start and end of each KEY_COLUMNS slot's text in
   * `buf` (-1: NULL). The same keys as addRecord() of the parsed line (a test holds them equal):
   * the stream's text is the UTF-8 of the value the line's JSON holds.
   */
  addRaw(buf: Buffer, at: Int32Array, seq: number): void {
    for (let slot = 0; slot < SLOT_PREFIX.length; slot++) {
      const start = at[2 * slot]!;
      if (start < 0) continue;
      const end = at[2 * slot + 1]!;
      if (slot < 4 && !this.seen[slot]!.update(buf, start, end)) continue;
      this.addBytes(SLOT_PREFIX[slot]!, buf, start, end);
    }
    let tableChanged = false;
    for (const slot of TABLE_SLOTS) if (this.seen[slot]!.update(buf, at[2 * slot]!, at[2 * slot + 1]!)) tableChanged = true;
    const text = (slot: number): string | null => (at[2 * slot]! < 0 ? null : buf.toString('utf8', at[2 * slot]!, at[2 * slot + 1]!));
    if (tableChanged) {
      for (const t of tableNames({ schema_name: text(6), table_name: text(7), relation_name: text(8) })) this.addText(TABLE_PREFIX, t);
    }
    if (at[2 * APP_CONTEXT]! >= 0 && sameBytes(buf, at[2 * APP_CONTEXT]!, at[2 * APP_CONTEXT + 1]!, UNKNOWN)) this.unattributed++;
    if (
      at[2 * SOURCE]! >= 0 &&
      sameBytes(buf, at[2 * SOURCE]!, at[2 * SOURCE + 1]!, ATTEST_SOURCE_BYTES) &&
      at[2 * ACTION]! >= 0 &&
      sameBytes(buf, at[2 * ACTION]!, at[2 * ACTION + 1]!, ATTEST_ACTION_BYTES)
    ) {
      this.attestations.push(indexedAttestation({ statement: text(12), occurred_at: text(13) }, seq));
    }
  }

  /** One record: its op, sequence number and flat fields (the row's columns, or a parsed line). */
  addRecord(op: string, seq: number, r: Fields | null): void {
    if (op === 'update' || op === 'delete' || op === 'truncate' || op === 'gap') this.tamperOrGap++;
    if ((op !== 'insert' && op !== 'read') || r === null) return;
    // Values that repeat from the record before (users, tables) add nothing: skipped without hashing.
    this.value(0, r.app_customer_id);
    this.value(1, r.app_user_id);
    this.value(2, r.session_user_name);
    this.value(3, r.current_role_name);
    if (str(r.row_id)) this.addText(SLOT_PREFIX[4]!, r.row_id);
    if (str(r.old_row_id)) this.addText(SLOT_PREFIX[5]!, r.old_row_id);
    const last = this.lastTable;
    if (last === null || last[0] !== r.schema_name || last[1] !== r.table_name || last[2] !== r.relation_name) {
      this.lastTable = [r.schema_name, r.table_name, r.relation_name];
      for (const t of tableNames(r)) this.addText(TABLE_PREFIX, t);
    }
    if (r.app_context === 'unknown') this.unattributed++;
    if (op === 'insert' && r.source === ATTEST_SOURCE && r.action === ATTEST_ACTION) this.attestations.push(indexedAttestation(r, seq));
  }

  private value(slot: number, v: unknown): void {
    if (v === this.lastValue[slot] || !str(v)) return;
    this.lastValue[slot] = v;
    this.addText(SLOT_PREFIX[slot]!, v);
  }

  build(): KeyIndex {
    const n = this.keys.size;
    const bits = n * BITS_PER_KEY;
    const filter = Buffer.alloc(Math.ceil(bits / 8));
    this.keys.forEach((h1, h2) => {
      for (let i = 0; i < HASHES; i++) {
        const b = (h1 + i * h2) % bits;
        filter[b >> 3] = filter[b >> 3]! | (1 << (b & 7));
      }
    });
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

/** A parsed index whose shape checked out; its filter is read in place (below). */
export interface OpenIndex {
  index: KeyIndex;
}

/** Checks an index's shape; null when it is not one (a reader then reads the file). */
export function openIndex(v: unknown): OpenIndex | null {
  if (v === null || typeof v !== 'object') return null;
  const i = v as KeyIndex;
  const whole = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!whole(i.keys) || !whole(i.bits) || !whole(i.hashes) || i.hashes < 1 || i.hashes > 64 || typeof i.bloom !== 'string') return null;
  if (!whole(i.unattributed) || !whole(i.tamper_or_gap) || !Array.isArray(i.attestations)) return null;
  // base64 with padding of ceil(bits / 8) bytes
  if (i.bloom.length !== 4 * Math.ceil(Math.ceil(i.bits / 8) / 3) || (i.keys > 0 && i.bits === 0)) return null;
  return { index: i };
}

const BASE64 = new Int8Array(128).fill(-1);
[...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].forEach((c, i) => {
  BASE64[c.charCodeAt(0)] = i;
});

/**
 * Byte `b` of the filter, decoded from its base64 group alone: a search asks 14 bits of each of
 * thousands of digests, and decoding whole filters (about 50 KiB each on a busy archive) was most of
 * the cost of skipping a file. An unreadable character reads as all bits set (the file is read).
 */
function filterByte(bloom: string, b: number): number {
  const at = Math.floor(b / 3) * 4;
  let group = 0;
  for (let i = 0; i < 4; i++) {
    const c = bloom.charCodeAt(at + i);
    const v = c === 0x3d /* = */ ? 0 : c < 128 ? BASE64[c]! : -1;
    if (v < 0) return 0xff;
    group = (group << 6) | v;
  }
  return (group >>> (8 * (2 - (b % 3)))) & 0xff;
}

/** Whether the file may hold `field=value`: false only when the filter rules it out. */
export function mayContain(o: OpenIndex, field: KeyField, value: string): boolean {
  if (o.index.bits === 0) return false; // no keys at all
  const bloom = o.index.bloom;
  return positions(`${field}=${value}`, o.index.bits, o.index.hashes, (b) => (filterByte(bloom, b >> 3) & (1 << (b & 7))) !== 0);
}
