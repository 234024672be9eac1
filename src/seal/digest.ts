import { hash, sign, verify } from 'node:crypto';
import type { ChainHash } from './record.js';
import type { KeyId, SigningKey, VerifyKey } from './keys.js';
import type { KeyIndex } from './key-index.js';

/**
 * Version 3 (this writer): a data digest carries its file's key index, so a query can skip files
 * on a signed statement (src/seal/key-index.ts). Version 2: a data file of backfill records (rows
 * archived from a slot's snapshot) holds one UTC event date and is filed under it. Version 1 filed
 * them under the day they were sealed. Readers accept all three (docs/format.md, "Versions").
 */
export const DIGEST_FORMAT = 'pg-audit-shipper/digest/3';
export const DIGEST_FORMAT_V2 = 'pg-audit-shipper/digest/2';
export const DIGEST_FORMAT_V1 = 'pg-audit-shipper/digest/1';
export const DIGEST_FORMATS: readonly string[] = [DIGEST_FORMAT_V1, DIGEST_FORMAT_V2, DIGEST_FORMAT];

/**
 * What a digest says about one stored file (kind "data") or about a quiet period (kind
 * "heartbeat": no file, same chain head, proves the shipper was alive and saw nothing).
 * Field order is fixed: the digest's first line is exactly JSON.stringify of this object.
 */
export interface Digest {
  format: typeof DIGEST_FORMAT | typeof DIGEST_FORMAT_V2 | typeof DIGEST_FORMAT_V1;
  kind: 'data' | 'heartbeat';
  file_seq: number;
  /** SHA-256 of the previous digest object's bytes; null only for file_seq 1 */
  prev_digest_sha256: string | null;
  created_at: string;
  system_identifier: string;
  timeline: number;
  database: string;
  slot: string;
  record_count: number;
  first_seq: number | null;
  last_seq: number | null;
  /** chain hash before this file's first record, and after its last (equal when no records) */
  prev_chain: ChainHash;
  last_chain: ChainHash;
  first_lsn: string | null;
  last_lsn: string | null;
  /** idx of the last record inside the transaction at last_lsn */
  last_idx: number | null;
  /** everything at or below this position is stored: the slot may be acknowledged up to it */
  ack_lsn: string;
  first_event_at: string | null;
  last_event_at: string | null;
  object_key: string | null;
  object_bytes: number | null;
  /** SHA-256 of the stored (gzip) bytes, and of the uncompressed JSON lines */
  object_sha256: string | null;
  content_sha256: string | null;
  /** format 3: the data file's key index; null in a heartbeat; absent before format 3 */
  index?: KeyIndex | null;
  key_id: KeyId;
}

/**
 * The stored digest: line 1 is the digest JSON, line 2 `{"signature":"<base64>"}`, an Ed25519
 * signature over line 1 including its newline. By hand:
 *   head -n1 X.digest > body; tail -n1 X.digest | jq -r .signature | base64 -d > sig
 *   openssl pkeyutl -verify -pubin -inkey verify-key.pem -rawin -in body -sigfile sig
 */
export function signDigest(d: Digest, key: SigningKey): Buffer {
  const body = `${JSON.stringify(d)}\n`;
  const sig = sign(null, Buffer.from(body), key.privateKey).toString('base64');
  return Buffer.from(`${body}${JSON.stringify({ signature: sig })}\n`);
}

export function sha256Hex(b: Buffer | string): string {
  return hash('sha256', b, 'hex');
}

export type DigestCheck = { ok: true; digest: Digest } | { ok: false; problem: string; digest?: Digest };

/**
 * Parse a stored digest and check its signature with the key its key_id names. `signature: false`
 * checks all but the signature itself (a walk that defers it, src/verify/links.ts).
 */
export function openDigest(bytes: Buffer, keys: Map<string, VerifyKey>, signature = true): DigestCheck {
  const text = bytes.toString('utf8');
  const nl = text.indexOf('\n');
  if (nl < 0 || !text.endsWith('\n')) return { ok: false, problem: 'digest is not two complete lines' };
  const bodyLine = text.slice(0, nl + 1);
  const sigLine = text.slice(nl + 1, -1);
  let digest: Digest;
  let sig: unknown;
  try {
    digest = JSON.parse(bodyLine) as Digest;
    sig = (JSON.parse(sigLine) as { signature: unknown }).signature;
  } catch {
    return { ok: false, problem: 'digest is not valid JSON' };
  }
  if (!DIGEST_FORMATS.includes(digest.format)) return { ok: false, problem: `unknown digest format ${JSON.stringify(digest.format)}`, digest };
  if (typeof sig !== 'string') return { ok: false, problem: 'digest has no signature', digest };
  const key = keys.get(digest.key_id);
  if (!key) return { ok: false, problem: `digest is signed with key ${digest.key_id}, which is not among the verify keys given`, digest };
  if (signature && !signatureHolds(bytes, key)) {
    return { ok: false, problem: 'digest signature does not match its content', digest };
  }
  return { ok: true, digest };
}

/** Whether a stored digest's (well-formed, see openDigest) signature verifies with `key`. */
export function signatureHolds(bytes: Buffer, key: VerifyKey): boolean {
  const nl = bytes.indexOf(10);
  const sig = (JSON.parse(bytes.subarray(nl + 1).toString('utf8')) as { signature: string }).signature;
  return verify(null, bytes.subarray(0, nl + 1), key.publicKey, Buffer.from(sig, 'base64'));
}

/** A head recorded earlier (a previous report's last line): the archive must still hold it, unchanged. */
export interface ExpectedHead {
  fileSeq: number;
  digestSha256: string;
}

/** `SEQ:SHA256`, as every report prints its head. */
export function parseExpectedHead(text: string): ExpectedHead | null {
  const m = /^(\d{1,12}):([0-9a-f]{64})$/.exec(text.trim());
  return m ? { fileSeq: Number(m[1]), digestSha256: m[2]! } : null;
}

export function formatHead(fileSeq: number, digestSha256: string): string {
  return `${fileSeq}:${digestSha256}`;
}
