import { hash } from 'node:crypto';
import { jsonString, type ChainHash } from './record.js';
import { KEY_COLUMNS } from './key-index.js';

/**
 * The shipper's hot path: an audit_log insert as pgoutput sent it (a text tuple) becomes an
 * archived line without decoding each column into a JavaScript string and without a row object.
 * The bytes are exactly what recordBody() + sealRecord() write for the same row (a test holds the
 * two paths equal): plain ASCII values are copied as they are, anything that JSON escapes or that
 * is not ASCII goes through the same jsonString() as the general path.
 *
 * Written for the JIT: byte loops over plain Uint8Arrays, no strings or objects per column, and the
 * names of all columns in one array, so every access stays monomorphic.
 */
export interface TupleLayout {
  /** the relation's OID, as pgoutput's insert messages name it */
  relid: number;
  /** `,"column":` for each column, in table order, back to back */
  names: Uint8Array;
  /** where each column's name starts in `names` (one more entry than columns: the end) */
  nameAt: Int32Array;
  /** index of occurred_at (event time range of the file), or -1 */
  occurredAt: number;
  /** for each column, its slot in KEY_COLUMNS (the file's key index reads it), or -1 */
  keySlot: Int8Array;
}

export function tupleLayout(relid: number, columns: string[]): TupleLayout {
  const parts = columns.map((c) => Buffer.from(`,${JSON.stringify(c)}:`));
  const nameAt = new Int32Array(parts.length + 1);
  parts.forEach((p, i) => {
    nameAt[i + 1] = nameAt[i]! + p.length;
  });
  const keySlot = new Int8Array(columns.length).fill(-1);
  KEY_COLUMNS.forEach((c, slot) => {
    const i = columns.indexOf(c);
    if (i >= 0) keySlot[i] = slot;
  });
  return { relid, names: new Uint8Array(Buffer.concat(parts)), nameAt, occurredAt: columns.indexOf('occurred_at'), keySlot };
}

/** An insert message of the relation: 'I', relid, 'N', then the tuple at `offset` (pgoutput protocol 1). */
export interface RawTuple {
  buf: Buffer;
  offset: number;
  layout: TupleLayout;
}

/** The fields every line starts with (see recordBody), for the raw path. */
export interface RawHead {
  seq: number;
  /** the commit LSN as the server spells it, ASCII */
  lsn: string;
  idx: number;
}

/** Where occurred_at's text lies in the message (empty when the column is NULL or absent). */
export interface ByteRange {
  start: number;
  end: number;
}

/** The most bytes the line for `t` can take (every value byte escaped as \u00XX), for sizing `out`. */
export function rawLineBound(h: RawHead, t: RawTuple): number {
  return 200 + h.lsn.length + (t.buf.length - t.offset) * 6 + t.layout.names.length;
}

const HEAD_SEQ = ascii('{"seq":');
const HEAD_LSN = ascii(',"lsn":"');
const HEAD_IDX = ascii('","idx":');
const HEAD_OP = ascii(',"op":"insert"');
const NULL = ascii('null');
const CHAIN_OPEN = ascii('{"chain":"');

function ascii(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'latin1'));
}

function put(out: Uint8Array, at: number, bytes: Uint8Array): number {
  for (let j = 0; j < bytes.length; j++) out[at + j] = bytes[j]!;
  return at + bytes.length;
}

function putAscii(out: Uint8Array, at: number, s: string): number {
  for (let j = 0; j < s.length; j++) out[at + j] = s.charCodeAt(j);
  return at + s.length;
}

/** A non-negative safe integer in decimal, as JSON (and String()) writes it. */
function putUint(out: Uint8Array, at: number, n: number): number {
  if (n < 10) {
    out[at] = 0x30 + n;
    return at + 1;
  }
  let digits = 0;
  for (let v = n; v >= 1; v = Math.floor(v / 10)) digits++;
  for (let i = digits - 1, v = n; i >= 0; i--, v = Math.floor(v / 10)) out[at + i] = 0x30 + (v % 10);
  return at + digits;
}

function readInt32(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
}

/**
 * Encode and chain one insert record, writing its line into `out` at `at` (which must have
 * rawLineBound() bytes free). Returns where the line ends and its chain hash; `eventAt` is set to
 * where occurred_at's text lies in `t.buf`, for the file's event time range, and `keyAt` (two
 * entries per KEY_COLUMNS slot: start, end) to where the key index's columns lie (-1: NULL or absent).
 */
export function sealRawInsert(
  prev: ChainHash,
  h: RawHead,
  t: RawTuple,
  out: Buffer,
  at: number,
  eventAt: ByteRange,
  keyAt: Int32Array,
): { end: number; chain: ChainHash } {
  const { buf, layout } = t;
  const names = layout.names;
  const nameAt = layout.nameAt;
  const keySlot = layout.keySlot;
  keyAt.fill(-1);
  // The line is `{"chain":"` + 64 hex + `",` (76 bytes) + the body after its "{". The chain input
  // (64 hex of prev, then the body from "{") is laid out first, ending where the body will stay,
  // and the prefix is written over it once hashed.
  putAscii(out, at + 11, prev); // prev hex at 11..75, so the body's "{" lands at 75
  let pos = put(out, at + 75, HEAD_SEQ);
  pos = putUint(out, pos, h.seq);
  pos = put(out, pos, HEAD_LSN);
  pos = putAscii(out, pos, h.lsn);
  pos = put(out, pos, HEAD_IDX);
  if (h.idx < 0) {
    // -1 never occurs for an insert from the stream, but stay exact if it did
    out[pos++] = 0x2d;
    pos = putUint(out, pos, -h.idx);
  } else {
    pos = putUint(out, pos, h.idx);
  }
  pos = put(out, pos, HEAD_OP);
  let off = t.offset;
  const ncols = (buf[off]! << 8) | buf[off + 1]!;
  off += 2;
  eventAt.start = 0;
  eventAt.end = 0;
  for (let i = 0; i < ncols; i++) {
    for (let j = nameAt[i]!, e = nameAt[i + 1]!; j < e; j++) out[pos++] = names[j]!;
    const kind = buf[off++];
    if (kind === 0x74 /* t: text */) {
      const len = readInt32(buf, off);
      off += 4;
      const end = off + len;
      const mark = pos;
      out[pos++] = 0x22;
      let plain = true;
      for (let j = off; j < end; j++) {
        const b = buf[j]!;
        if (b < 0x20 || b === 0x22 || b === 0x5c || b > 0x7e) {
          plain = false;
          break;
        }
        out[pos++] = b;
      }
      if (plain) {
        out[pos++] = 0x22;
      } else {
        pos = mark + out.write(jsonString(buf.toString('utf8', off, end)), mark, 'utf8');
      }
      if (i === layout.occurredAt) {
        eventAt.start = off;
        eventAt.end = end;
      }
      const slot = keySlot[i]!;
      if (slot >= 0) {
        keyAt[2 * slot] = off;
        keyAt[2 * slot + 1] = end;
      }
      off = end;
    } else if (kind === 0x6e /* n: null */ || kind === 0x75 /* u: unchanged TOAST, never in an insert */) {
      pos = put(out, pos, NULL);
    } else {
      throw new Error(`unexpected pgoutput attribute kind ${String.fromCharCode(kind ?? 0)} in an audit_log insert`);
    }
  }
  out[pos++] = 0x7d; // }
  const chain = hash('sha256', out.subarray(at + 11, pos), 'hex') as ChainHash;
  put(out, at, CHAIN_OPEN);
  putAscii(out, at + 10, chain);
  out[at + 74] = 0x22; // `",` over the body's "{": the line continues with the body's second byte
  out[at + 75] = 0x2c;
  out[pos++] = 0x0a;
  return { end: pos, chain };
}
