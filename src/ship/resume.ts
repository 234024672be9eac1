import { ServiceError } from '../errors.js';
import { findHeadSeq } from '../sink/probe.js';
import { openDigest, sha256Hex, type Digest } from '../seal/digest.js';
import type { VerifyKey } from '../seal/keys.js';
import { GENESIS_CHAIN, type ChainHash } from '../seal/record.js';
import type { ArchiveHead } from '../seal/sealer.js';
import { digestKey, objectUrl } from '../sink/keys.js';
import type { ArchiveReader } from '../sink/sink.js';
import { parseAckLsn, parseLsn } from '../source/lsn.js';

export const EMPTY_HEAD: ArchiveHead = {
  fileSeq: 0,
  digestSha256: null,
  ackLsn: null,
  lastWrittenAt: 0,
  position: { recordSeq: 0, chain: GENESIS_CHAIN, lastLsn: null, lastIdx: -1 },
};

export interface Resumed {
  head: ArchiveHead;
  digest: Digest | null;
}

/** Read and check the archive's head so the chain continues from the archive itself. */
export async function resumeFromArchive(reader: ArchiveReader, location: string, keys: Map<string, VerifyKey>, recordedSeq: number | null): Promise<Resumed> {
  let seq: number;
  let bytes: Buffer | null;
  if (recordedSeq !== null && recordedSeq > 0) {
    // Usually the recorded head is the archive's head: ask for it, and whether a later one exists, at once.
    const [recorded, next] = await Promise.all([reader.get(digestKey(recordedSeq)), reader.exists(digestKey(recordedSeq + 1))]);
    if (recorded === null) {
      throw new ServiceError(
        `the database records file ${recordedSeq} as shipped, but ${objectUrl(location, digestKey(recordedSeq))} is missing: ` +
          'archived digests were removed or this is the wrong archive. Refusing to continue the chain (run `pg-audit-shipper verify`)',
      );
    }
    seq = next ? await findHeadSeq(reader, recordedSeq + 1) : recordedSeq;
    bytes = next ? await reader.get(digestKey(seq)) : recorded;
  } else {
    seq = await findHeadSeq(reader, 0);
    if (seq === 0) return { head: EMPTY_HEAD, digest: null };
    bytes = await reader.get(digestKey(seq));
  }
  if (!bytes) throw new ServiceError(`${objectUrl(location, digestKey(seq))} disappeared while reading the archive head`);
  const opened = openDigest(bytes, keys);
  if (!opened.ok) {
    throw new ServiceError(`the archive head ${objectUrl(location, digestKey(seq))} cannot be trusted: ${opened.problem}`);
  }
  const d = opened.digest;
  if (d.file_seq !== seq) throw new ServiceError(`${objectUrl(location, digestKey(seq))} claims to be file ${d.file_seq}`);
  return {
    digest: d,
    head: {
      fileSeq: seq,
      digestSha256: sha256Hex(bytes),
      ackLsn: parseAckLsn(d.ack_lsn),
      lastWrittenAt: Date.parse(d.created_at),
      position: {
        recordSeq: d.last_seq ?? 0,
        chain: d.last_chain as ChainHash,
        lastLsn: d.last_lsn === null ? null : parseLsn(d.last_lsn),
        lastIdx: d.last_idx ?? -1,
      },
    },
  };
}
