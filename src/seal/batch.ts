import { formatLsn, type Lsn } from '../source/lsn.js';
import { recordBody, sealRecord, type ChainHash, type RecordOp, type RowText } from './record.js';

export interface BatchLimits {
  maxRecords: number;
  /** uncompressed bytes of JSON lines */
  maxBytes: number;
  maxAgeMs: number;
}

/** Where the chain stands: the next record continues from here. */
export interface ChainPosition {
  recordSeq: number;
  chain: ChainHash;
  /** commit LSN and index of the last archived change: anything at or below is already stored */
  lastLsn: Lsn | null;
  lastIdx: number;
}

export interface OpenRecord {
  op: RecordOp;
  commitLsn: Lsn;
  idx: number;
  row: RowText | null;
  extra?: Record<string, unknown>;
}

/**
 * Records waiting to be sealed into one file. Appending encodes and chains immediately, so the
 * batch holds bytes, not objects, and its size is known exactly.
 */
export class Batch {
  readonly lines: string[] = [];
  bytes = 0;
  readonly startedAt = Date.now();
  readonly prevChain: ChainHash;
  readonly firstSeq: number;
  firstLsn: Lsn | null = null;
  firstEventAt: string | null = null;
  lastEventAt: string | null = null;
  /** highest commit end LSN whose transaction is entirely in this or earlier batches */
  ackLsn: Lsn | null = null;

  constructor(public position: ChainPosition, readonly commitDate: string) {
    this.prevChain = position.chain;
    this.firstSeq = position.recordSeq + 1;
  }

  get count(): number {
    return this.lines.length;
  }

  append(r: OpenRecord): void {
    const seq = this.position.recordSeq + 1;
    const body = recordBody({ seq, lsn: formatLsn(r.commitLsn), idx: r.idx, op: r.op }, r.row, r.extra);
    const { line, chain } = sealRecord(this.position.chain, body);
    this.lines.push(line);
    this.bytes += Buffer.byteLength(line) + 1;
    this.position = { recordSeq: seq, chain, lastLsn: r.commitLsn, lastIdx: r.idx };
    if (this.firstLsn === null) this.firstLsn = r.commitLsn;
    const at = r.row?.occurred_at ?? null;
    if (at !== null) {
      if (this.firstEventAt === null || at < this.firstEventAt) this.firstEventAt = at;
      if (this.lastEventAt === null || at > this.lastEventAt) this.lastEventAt = at;
    }
  }

  full(limits: BatchLimits): boolean {
    return this.lines.length >= limits.maxRecords || this.bytes >= limits.maxBytes;
  }

  old(limits: BatchLimits, now = Date.now()): boolean {
    return this.lines.length > 0 && now - this.startedAt >= limits.maxAgeMs;
  }

  content(): Buffer {
    return Buffer.from(`${this.lines.join('\n')}\n`);
  }
}

/** (lsn, idx) at or below the position: already archived, skip it. */
export function alreadyStored(pos: ChainPosition, commitLsn: Lsn, idx: number): boolean {
  if (pos.lastLsn === null) return false;
  return commitLsn < pos.lastLsn || (commitLsn === pos.lastLsn && idx <= pos.lastIdx);
}
