import { hash } from 'node:crypto';

/**
 * One archived record is one line of JSON whose first 76 bytes are `{"chain":"<64 hex>",`.
 * The chain hash covers exact bytes, so nobody re-serialises JSON to check it:
 *
 *   body_i  = "{" + line_i[76:]            (the record without its chain field)
 *   chain_i = SHA-256( chain_{i-1} as 64 lower-case hex ASCII  ||  body_i )   (hex)
 *
 * chain_0 (before the first record of an archive) is 64 zeros. See docs/format.md.
 */
export type ChainHash = string & { readonly __brand: 'ChainHash' };
export const GENESIS_CHAIN = '0'.repeat(64) as ChainHash;
export const CHAIN_PREFIX_LENGTH = '{"chain":"'.length + 64 + '",'.length; // 76

export function chainHash(prev: ChainHash, body: string): ChainHash {
  // One-shot hashing: a Hash object per record was an eighth of the shipper's CPU time.
  return hash('sha256', prev + body, 'hex') as ChainHash;
}

/** The line for `body` (a JSON object text starting with "{") after `prev`, and its chain hash. */
export function sealRecord(prev: ChainHash, body: string): { line: string; chain: ChainHash } {
  const chain = chainHash(prev, body);
  return { line: `{"chain":"${chain}",${body.slice(1)}`, chain };
}

/** The inverse: split a stored line into its claimed chain hash and its body. */
export function openRecord(line: string): { claimed: string; body: string } | null {
  if (line.length <= CHAIN_PREFIX_LENGTH || !line.startsWith('{"chain":"') || line.slice(74, 76) !== '",') return null;
  return { claimed: line.slice(10, 74), body: `{${line.slice(CHAIN_PREFIX_LENGTH)}` };
}

// Characters JSON.stringify would escape (quote, backslash, controls, lone surrogates).
// eslint-disable-next-line no-control-regex -- the control characters are what it looks for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** Same output as JSON.stringify(v) for a string, without its cost on the common plain text. */
export function jsonString(v: string): string {
  return NEEDS_ESCAPE.test(v) ? JSON.stringify(v) : `"${v}"`;
}

const keyPrefixes = new Map<string, string>();
function keyPrefix(k: string): string {
  let p = keyPrefixes.get(k);
  if (p === undefined) {
    p = `,${JSON.stringify(k)}:`;
    keyPrefixes.set(k, p);
  }
  return p;
}

/** Column values as the server printed them (text), or null. */
export type RowText = Record<string, string | null>;

/**
 * insert: an audit event; read: a row read through the policy (no audit_log row: it came as a
 * message); update/delete/truncate: a tamper attempt on audit_log; gap: events not streamed; marker: bookkeeping
 */
export type RecordOp = 'insert' | 'read' | 'update' | 'delete' | 'truncate' | 'gap' | 'marker';

/** The fields every record starts with, in this order. */
export interface RecordHead {
  seq: number;
  /** commit LSN of the transaction that holds the change (its end, as acknowledged) */
  lsn: string;
  /** position of the change inside its transaction */
  idx: number;
  op: RecordOp;
}

/**
 * The record body: fixed head fields, then the row's columns in table order (flat, so a JSON SerDe
 * reads them as top-level columns), then for tamper records the old row under "old".
 */
export function recordBody(head: RecordHead, row: RowText | null, extra?: Record<string, unknown>): string {
  let s = `{"seq":${head.seq},"lsn":"${head.lsn}","idx":${head.idx},"op":"${head.op}"`;
  if (row) {
    for (const k in row) {
      const v = row[k];
      s += `${keyPrefix(k)}${v === null || v === undefined ? 'null' : jsonString(v)}`;
    }
  }
  if (extra) {
    for (const k in extra) s += `,${JSON.stringify(k)}:${JSON.stringify(extra[k])}`;
  }
  return `${s}}`;
}
