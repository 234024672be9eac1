import { createPrivateKey, createPublicKey } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Batch } from '../../src/seal/batch.js';
import { sha256Hex, signDigest, type Digest } from '../../src/seal/digest.js';
import { keyIdOf, type SigningKey } from '../../src/seal/keys.js';
import type { RecordOp, RowText } from '../../src/seal/record.js';
import { sealBatch, sealHeartbeat, type ArchiveHead, type Source } from '../../src/seal/sealer.js';
import { digestKey } from '../../src/sink/keys.js';
import type { ArchiveReader } from '../../src/sink/sink.js';
import { parseLsn, type Lsn } from '../../src/source/lsn.js';
import { EMPTY_HEAD } from '../../src/ship/resume.js';

/**
 * Small archives made by the shipper's own sealer (Batch, sealBatch, sealHeartbeat), with a fixed
 * clock and the documented test keys, so that every byte is reproducible. An insider with the
 * signing key is modelled by `tweak`: the digest is changed and signed again before the next file
 * links to it, exactly as a key holder rewriting history would do.
 */

/** Ed25519 test keys: seed bytes `start, start+1, ... start+31`. Never use them for anything real. */
export function seededKey(start: number): SigningKey {
  const seed = Buffer.from(Array.from({ length: 32 }, (_, i) => (start + i) & 0xff));
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

export const KEY_A = seededKey(0x00); // docs/format.md's test key
export const KEY_B = seededKey(0x20); // the key after a rotation

export const SOURCE: Source = { systemIdentifier: '7712636088010598091', timeline: 1, database: 'clinic', slot: 'pg_audit_shipper' };

export interface RecordSpec {
  op: RecordOp | string;
  /** commit LSN of the transaction */
  lsn: string;
  idx: number;
  row?: RowText | null;
  extra?: Record<string, unknown>;
}

export interface FileSpec {
  kind?: 'data' | 'heartbeat';
  records?: RecordSpec[];
  /** the UTC commit date of the transactions in the file (the data key's partition) */
  commitDate?: string;
  createdAt: string;
  /** everything below this position is archived (a commit's end LSN, or a keepalive's) */
  ackLsn: string;
  key?: SigningKey;
  source?: Partial<Source>;
  /** an insider's change to the digest, signed again with the file's key */
  tweak?: (d: Digest) => Digest;
}

let nextId = 1;
/** An audit_log row as the trigger writes it (text values, as the server prints them). */
export function auditRow(over: Partial<Record<string, string | null>> = {}): RowText {
  const id = String(nextId++);
  return {
    id,
    occurred_at: '2026-03-02 09:15:00.120034+00',
    tx_started_at: '2026-03-02 09:15:00.118+00',
    source: 'trigger',
    action: 'UPDATE',
    outcome: 'success',
    schema_name: 'public',
    table_name: 'customers',
    row_id: '4711',
    changed_columns: '{full_name}',
    session_user_name: 'phi_app',
    current_role_name: 'phi_app',
    app_user_id: 'dr.alice',
    app_customer_id: '4711',
    application_name: 'clinic-web',
    client_addr: '10.0.0.7',
    client_port: '50432',
    backend_pid: '4242',
    txid: '771',
    statement: null,
    error: null,
    log_session_id: null,
    log_line_num: null,
    ...over,
  };
}

export function resetIds(): void {
  nextId = 1;
}

/** The archive's objects, key -> bytes. */
export type Objects = Map<string, Buffer>;

export async function buildArchive(files: FileSpec[]): Promise<Objects> {
  const objects: Objects = new Map();
  let head: ArchiveHead = EMPTY_HEAD;
  for (const f of files) {
    const key = f.key ?? KEY_A;
    const source = { ...SOURCE, ...f.source };
    const now = new Date(f.createdAt);
    const ack = parseLsn(f.ackLsn) as Lsn;
    let sealed;
    if ((f.kind ?? 'data') === 'heartbeat') {
      sealed = sealHeartbeat(head, source, key, ack, now);
    } else {
      const batch = new Batch(head.position, f.commitDate ?? '2026-03-02');
      for (const r of f.records ?? []) {
        batch.append({ op: r.op as RecordOp, commitLsn: parseLsn(r.lsn), idx: r.idx, row: r.row ?? null, ...(r.extra ? { extra: r.extra } : {}) });
      }
      batch.ackLsn = ack;
      sealed = await sealBatch(batch, head, source, key, now);
    }
    let digest = sealed.digest;
    let data: Buffer | undefined;
    if (sealed.objects.length > 1) {
      // Stored (level 0) gzip: the same bytes from every zlib, so the corpus and the documented
      // vectors are exact whatever Node version builds them. Readers do not care about the level.
      data = gzipSync(gunzipSync(sealed.objects[0]!.body), { level: 0 });
      digest = { ...digest, object_bytes: data.length, object_sha256: sha256Hex(data) };
    }
    // An insider's change, or none; either way the digest is signed here, over what it now says.
    if (f.tweak) digest = f.tweak({ ...digest });
    const digestBytes = signDigest(digest, key);
    if (data && digest.object_key) objects.set(digest.object_key, data);
    objects.set(digestKey(digest.file_seq), digestBytes);
    head = {
      fileSeq: digest.file_seq,
      digestSha256: sha256Hex(digestBytes),
      ackLsn: ack,
      lastWrittenAt: now.getTime(),
      position: sealed.position,
    };
  }
  return objects;
}

/** The head as a report prints it (`SEQ:SHA256`). */
export function headOf(objects: Objects, seq: number): string {
  return `${seq}:${sha256Hex(objects.get(digestKey(seq))!)}`;
}

/** An archive reader over objects in memory: the same interface the file and S3 archives give. */
export function memoryReader(objects: Objects): ArchiveReader {
  const sorted = () => [...objects.keys()].sort();
  return {
    get: async (k) => objects.get(k) ?? null,
    exists: async (k) => objects.has(k),
    async *list(prefix, startAfter) {
      for (const k of sorted()) if (k.startsWith(prefix) && (startAfter === undefined || k > startAfter)) yield k;
    },
  };
}
