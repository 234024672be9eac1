import { hash } from 'node:crypto';
import { jsonString, type ChainHash } from './record.js';

/**
 * The shipper's hot path: an audit_log insert as pgoutput sent it (a text tuple) becomes an
 * archived line without decoding each column into a JavaScript string and without a row object.
 * The bytes are exactly what recordBody() + sealRecord() write for the same row (a test holds the
 * two paths equal): plain ASCII values are copied as they are, anything that JSON escapes or that
 * is not ASCII goes through the same jsonString() as the general path.
 */
export interface TupleLayout {
  /** the relation's OID, as pgoutput's insert messages name it */
  relid: number;
  /** `,"column":` for each column, in table order */
  names: Buffer[];
  namesBytes: number;
  /** index of occurred_at (event time range of the file), or -1 */
  occurredAt: number;
}

export function tupleLayout(relid: number, columns: string[]): TupleLayout {
  const names = columns.map((c) => Buffer.from(`,${JSON.stringify(c)}:`));
  return { relid, names, namesBytes: names.reduce((n, b) => n + b.length, 0), occurredAt: columns.indexOf('occurred_at') };
}

/** An insert message of the relation: 'I', relid, 'N', then the tuple at `offset` (pgoutput protocol 1). */
export interface RawTuple {
  buf: Buffer;
  offset: number;
  layout: TupleLayout;
}

/** The most bytes the line for `t` can take (every value byte escaped as \u00XX), for sizing `out`. */
export function rawLineBound(head: string, t: RawTuple): number {
  return 160 + head.length + (t.buf.length - t.offset) * 6 + t.layout.namesBytes;
}

/**
 * Encode and chain one insert record, writing its line into `out` at `at` (which must have
 * rawLineBound() bytes free). Returns where the line ends, its chain hash, and the occurred_at
 * text for the file's event time range.
 */
export function sealRawInsert(prev: ChainHash, head: string, t: RawTuple, out: Buffer, at: number): { end: number; chain: ChainHash; eventAt: string | null } {
  const { buf, layout } = t;
  const s = out;
  // The line is `{"chain":"` + 64 hex + `",` (76 bytes) + the body after its "{". The chain input
  // (64 hex of prev, then the body from "{") is laid out first, ending where the body will stay,
  // and the prefix is written over it once hashed.
  s.write(prev, at + 11, 'latin1'); // prev hex at 11..75, so the body's "{" lands at 75
  let pos = at + 75;
  pos += s.write(head, pos, 'latin1'); // `{"seq":…,"op":"insert"`
  let off = t.offset;
  const ncols = buf.readInt16BE(off);
  off += 2;
  let eventAt: string | null = null;
  for (let i = 0; i < ncols; i++) {
    // Copies byte by byte: for names and values this short, Buffer#copy's own overhead dominated.
    const name = layout.names[i]!;
    for (let j = 0; j < name.length; j++) s[pos++] = name[j]!;
    const kind = buf[off++];
    if (kind === 0x74 /* t: text */) {
      const len = buf.readInt32BE(off);
      off += 4;
      const end = off + len;
      const mark = pos;
      s[pos++] = 0x22;
      let plain = true;
      for (let j = off; j < end; j++) {
        const b = buf[j]!;
        if (b < 0x20 || b === 0x22 || b === 0x5c || b > 0x7e) {
          plain = false;
          break;
        }
        s[pos++] = b;
      }
      if (plain) {
        s[pos++] = 0x22;
      } else {
        pos = mark + s.write(jsonString(buf.toString('utf8', off, end)), mark, 'utf8');
      }
      if (i === layout.occurredAt) eventAt = buf.toString('latin1', off, end);
      off = end;
    } else if (kind === 0x6e /* n: null */ || kind === 0x75 /* u: unchanged TOAST, never in an insert */) {
      s[pos++] = 0x6e; s[pos++] = 0x75; s[pos++] = 0x6c; s[pos++] = 0x6c; // null
    } else {
      throw new Error(`unexpected pgoutput attribute kind ${String.fromCharCode(kind ?? 0)} in an audit_log insert`);
    }
  }
  s[pos++] = 0x7d; // }
  const chain = hash('sha256', s.subarray(at + 11, pos), 'hex') as ChainHash;
  s.write('{"chain":"', at, 'latin1');
  s.write(chain, at + 10, 'latin1');
  s.write('",', at + 74, 'latin1'); // over the body's "{": the line continues with the body's second byte
  s[pos++] = 0x0a;
  return { end: pos, chain, eventAt };
}
