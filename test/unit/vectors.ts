import { createPrivateKey, createPublicKey } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { keyIdOf, type SigningKey } from '../../src/seal/keys.js';
import { GENESIS_CHAIN, recordBody, sealRecord } from '../../src/seal/record.js';
import { DIGEST_FORMAT, sha256Hex, signDigest, type Digest } from '../../src/seal/digest.js';

/** The documented test key: Ed25519 seed = 32 bytes 0x00..0x1f. Never use it for anything real. */
export function testKey(): SigningKey {
  const seed = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

export function vectors() {
  const key = testKey();
  const rows = [
    { id: '1', occurred_at: '2026-11-26 23:51:06.480123+00', action: 'INSERT', outcome: 'success', row_id: '7', changed_columns: null },
    { id: '2', occurred_at: '2026-11-26 23:51:06.485+00', action: 'UPDATE', outcome: 'success', row_id: '7', changed_columns: '{full_name}' },
  ];
  const r1 = sealRecord(GENESIS_CHAIN, recordBody({ seq: 1, lsn: '0/1A2B3C8', idx: 0, op: 'insert' }, rows[0]!));
  const r2 = sealRecord(r1.chain, recordBody({ seq: 2, lsn: '0/1A2B3C8', idx: 1, op: 'insert' }, rows[1]!));
  const content = Buffer.from(`${r1.line}\n${r2.line}\n`);
  const gz = gzipSync(content, { level: 6 });
  const digest: Digest = {
    format: DIGEST_FORMAT, kind: 'data', file_seq: 1, prev_digest_sha256: null, created_at: '2026-11-27T00:00:00.000Z',
    system_identifier: '7712636088010598091', timeline: 1, database: 'clinic', slot: 'pg_audit_shipper',
    record_count: 2, first_seq: 1, last_seq: 2, prev_chain: GENESIS_CHAIN, last_chain: r2.chain,
    first_lsn: '0/1A2B3C8', last_lsn: '0/1A2B3C8', last_idx: 1, ack_lsn: '0/1A2B400',
    first_event_at: rows[0]!.occurred_at, last_event_at: rows[1]!.occurred_at,
    object_key: `data/dt=2026-11-26/000000000001-${sha256Hex(content).slice(0, 16)}.jsonl.gz`,
    object_bytes: gz.length, object_sha256: sha256Hex(gz), content_sha256: sha256Hex(content), key_id: key.keyId,
  };
  const digestBytes = signDigest(digest, key);
  return { key, r1, r2, content, digest, digestBytes };
}
