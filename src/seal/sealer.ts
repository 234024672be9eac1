import { formatAckLsn, formatLsn, type Lsn } from '../source/lsn.js';
import { dataKey, digestKey, streamKey } from '../sink/keys.js';
import type { ArchiveObject, DataLayout } from '../sink/sink.js';
import type { Batch, ChainPosition } from './batch.js';
import { DIGEST_FORMAT, sha256Hex, signDigest, type Digest } from './digest.js';
import type { SigningKey } from './keys.js';
import type { ChainHash } from './record.js';
import { pack } from './compress.js';

export interface Source {
  systemIdentifier: string;
  timeline: number;
  database: string;
  slot: string;
}

/** The archive's head: the last digest written, and where the record chain stands. */
export interface ArchiveHead {
  fileSeq: number;
  digestSha256: string | null;
  position: ChainPosition;
  ackLsn: Lsn | null;
  lastWrittenAt: number;
}

/** A file ready to store: its objects in write order (data before the digest that names it). */
export interface SealedFile {
  fileSeq: number;
  objects: ArchiveObject[];
  digest: Digest;
  digestSha256: string;
  ackLsn: Lsn | null;
  position: ChainPosition;
  records: number;
}

function baseDigest(kind: Digest['kind'], head: ArchiveHead, source: Source, key: SigningKey, now: Date): Digest {
  return {
    format: DIGEST_FORMAT,
    kind,
    file_seq: head.fileSeq + 1,
    prev_digest_sha256: head.digestSha256,
    created_at: now.toISOString(),
    system_identifier: source.systemIdentifier,
    timeline: source.timeline,
    database: source.database,
    slot: source.slot,
    record_count: 0,
    first_seq: null,
    last_seq: null,
    prev_chain: head.position.chain,
    last_chain: head.position.chain,
    first_lsn: null,
    last_lsn: null,
    last_idx: null,
    ack_lsn: formatAckLsn(head.ackLsn),
    first_event_at: null,
    last_event_at: null,
    object_key: null,
    object_bytes: null,
    object_sha256: null,
    content_sha256: null,
    index: null,
    key_id: key.keyId,
  };
}

export async function sealBatch(
  batch: Batch,
  head: ArchiveHead,
  source: Source,
  key: SigningKey,
  now = new Date(),
  layout: DataLayout = { kind: 'objects' },
): Promise<SealedFile> {
  const fileSeq = head.fileSeq + 1;
  // A delivery stream gets the lines themselves (it writes its own objects), so nothing to compress.
  const streamed = layout.kind === 'stream';
  const { contentSha256: contentSha, body, bodySha256 } = await pack(batch.take(), streamed);
  const objectKey = streamed ? streamKey(layout.stream, fileSeq) : dataKey(fileSeq, batch.commitDate, contentSha);
  const ackLsn = batch.ackLsn ?? head.ackLsn;
  const pos = batch.position;
  const digest: Digest = {
    ...baseDigest('data', head, source, key, now),
    record_count: batch.count,
    first_seq: batch.firstSeq,
    last_seq: pos.recordSeq,
    prev_chain: batch.prevChain,
    last_chain: pos.chain as ChainHash,
    first_lsn: batch.firstLsn === null ? null : formatLsn(batch.firstLsn),
    last_lsn: pos.lastLsn === null ? null : formatLsn(pos.lastLsn),
    last_idx: pos.lastIdx,
    ack_lsn: formatAckLsn(ackLsn),
    first_event_at: batch.firstEventAt,
    last_event_at: batch.lastEventAt,
    object_key: objectKey,
    object_bytes: body.length,
    object_sha256: bodySha256,
    content_sha256: contentSha,
    index: batch.keys.build(),
  };
  const digestBytes = signDigest(digest, key);
  return {
    fileSeq,
    objects: [
      { key: objectKey, body, contentType: 'application/x-ndjson' },
      { key: digestKey(fileSeq), body: digestBytes, contentType: 'application/x-ndjson' },
    ],
    digest,
    digestSha256: sha256Hex(digestBytes),
    ackLsn,
    position: pos,
    records: batch.count,
  };
}

/** A signed "nothing happened up to ack_lsn" checkpoint: no data object, same chain head. */
export function sealHeartbeat(head: ArchiveHead, source: Source, key: SigningKey, ackLsn: Lsn | null, now = new Date()): SealedFile {
  const digest: Digest = {
    ...baseDigest('heartbeat', head, source, key, now),
    // No records, but say where the record chain stands so the next digest can be checked against it.
    last_seq: head.position.recordSeq,
    ack_lsn: formatAckLsn(ackLsn ?? head.ackLsn),
    last_lsn: head.position.lastLsn === null ? null : formatLsn(head.position.lastLsn),
    last_idx: head.position.lastLsn === null ? null : head.position.lastIdx,
  };
  const digestBytes = signDigest(digest, key);
  return {
    fileSeq: head.fileSeq + 1,
    objects: [{ key: digestKey(head.fileSeq + 1), body: digestBytes, contentType: 'application/x-ndjson' }],
    digest,
    digestSha256: sha256Hex(digestBytes),
    ackLsn: ackLsn ?? head.ackLsn,
    position: head.position,
    records: 0,
  };
}
