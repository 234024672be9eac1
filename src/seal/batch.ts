import { formatLsn, type Lsn } from '../source/lsn.js';
import { recordBody, sealRecord, type ChainHash, type RecordOp, type RowText } from './record.js';
import { rawLineBound, sealRawInsert, type RawTuple } from './raw-record.js';

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
 * batch holds bytes (in chunks that grow with it), not objects, and its size is known exactly.
 */
export class Batch {
  private readonly chunks: Buffer[] = [];
  private chunk = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  count = 0;
  bytes = 0;
  readonly startedAt = Date.now();
  readonly prevChain: ChainHash;
  readonly firstSeq: number;
  firstLsn: Lsn | null = null;
  firstEventAt: string | null = null;
  lastEventAt: string | null = null;
  /** highest commit end LSN whose transaction is entirely in this or earlier batches */
  ackLsn: Lsn | null = null;
  private lsnOf: { lsn: Lsn; text: string } | null = null;

  constructor(public position: ChainPosition, readonly commitDate: string) {
    this.prevChain = position.chain;
    this.firstSeq = position.recordSeq + 1;
  }

  append(r: OpenRecord): void {
    const seq = this.position.recordSeq + 1;
    const body = recordBody({ seq, lsn: this.lsnText(r.commitLsn), idx: r.idx, op: r.op }, r.row, r.extra);
    const { line, chain } = sealRecord(this.position.chain, body);
    this.write(Buffer.from(`${line}\n`));
    this.appended(seq, chain, r.commitLsn, r.idx, r.row?.occurred_at ?? null);
  }

  /** An audit_log insert straight from the stream's bytes (the shipper's hot path). */
  appendInsert(commitLsn: Lsn, idx: number, tuple: RawTuple): void {
    const seq = this.position.recordSeq + 1;
    const head = `{"seq":${seq},"lsn":"${this.lsnText(commitLsn)}","idx":${idx},"op":"insert"`;
    this.room(rawLineBound(head, tuple));
    const { end, chain, eventAt } = sealRawInsert(this.position.chain, head, tuple, this.chunk, this.used);
    this.bytes += end - this.used;
    this.used = end;
    this.appended(seq, chain, commitLsn, idx, eventAt);
  }

  private appended(seq: number, chain: ChainHash, commitLsn: Lsn, idx: number, at: string | null): void {
    this.count++;
    this.position = { recordSeq: seq, chain, lastLsn: commitLsn, lastIdx: idx };
    if (this.firstLsn === null) this.firstLsn = commitLsn;
    if (at !== null) {
      if (this.firstEventAt === null || at < this.firstEventAt) this.firstEventAt = at;
      if (this.lastEventAt === null || at > this.lastEventAt) this.lastEventAt = at;
    }
  }

  private lsnText(lsn: Lsn): string {
    if (this.lsnOf?.lsn !== lsn) this.lsnOf = { lsn, text: formatLsn(lsn) };
    return this.lsnOf.text;
  }

  private write(line: Buffer): void {
    this.room(line.length);
    this.used += line.copy(this.chunk, this.used);
    this.bytes += line.length;
  }

  /** At least `n` free bytes in the current chunk; chunks double up to 1 MiB. */
  private room(n: number): void {
    if (this.chunk.length - this.used >= n) return;
    this.chunks.push(this.chunk.subarray(0, this.used));
    this.chunk = Buffer.allocUnsafe(Math.max(n, Math.min(this.chunk.length * 2, 1 << 20)));
    this.used = 0;
  }

  full(limits: BatchLimits): boolean {
    return this.count >= limits.maxRecords || this.bytes >= limits.maxBytes;
  }

  old(limits: BatchLimits, now = Date.now()): boolean {
    return this.count > 0 && now - this.startedAt >= limits.maxAgeMs;
  }

  /** The file's JSON lines, each ending in a newline. */
  content(): Buffer {
    return Buffer.concat([...this.chunks, this.chunk.subarray(0, this.used)], this.bytes);
  }
}

/** (lsn, idx) at or below the position: already archived, skip it. */
export function alreadyStored(pos: ChainPosition, commitLsn: Lsn, idx: number): boolean {
  if (pos.lastLsn === null) return false;
  return commitLsn < pos.lastLsn || (commitLsn === pos.lastLsn && idx <= pos.lastIdx);
}
