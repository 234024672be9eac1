import { formatLsn, type Lsn } from '../source/lsn.js';
import { recordBody, sealRecord, type ChainHash, type RecordOp, type RowText } from './record.js';
import { rawLineBound, sealRawInsert, type ByteRange, type RawTuple } from './raw-record.js';
import { KEY_COLUMNS, KeyIndexBuilder } from './key-index.js';

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
  /** the earliest and latest occurred_at text seen, as bytes (compared without making strings) */
  private firstAt: Uint8Array | null = null;
  private lastAt: Uint8Array | null = null;
  private readonly eventAt: ByteRange = { start: 0, end: 0 };
  private readonly keyAt = new Int32Array(2 * KEY_COLUMNS.length);
  /** the file's key index (digest format 3), built as records are appended */
  readonly keys = new KeyIndexBuilder();
  /** highest commit end LSN whose transaction is entirely in this or earlier batches */
  ackLsn: Lsn | null = null;
  private lsnOf: { lsn: Lsn; text: string } | null = null;

  constructor(
    public position: ChainPosition,
    readonly commitDate: string,
  ) {
    this.prevChain = position.chain;
    this.firstSeq = position.recordSeq + 1;
  }

  append(r: OpenRecord): void {
    const seq = this.position.recordSeq + 1;
    const body = recordBody({ seq, lsn: this.lsnText(r.commitLsn), idx: r.idx, op: r.op }, r.row, r.extra);
    const { line, chain } = sealRecord(this.position.chain, body);
    this.write(Buffer.from(`${line}\n`));
    this.appended(seq, chain, r.commitLsn, r.idx);
    this.keys.addRecord(r.op, seq, r.row);
    const at = r.row?.occurred_at;
    if (typeof at === 'string') {
      const b = Buffer.from(at, 'latin1');
      this.sawEventAt(b, 0, b.length);
    }
  }

  /** An audit_log insert straight from the stream's bytes (the shipper's hot path). */
  appendInsert(commitLsn: Lsn, idx: number, tuple: RawTuple): void {
    const seq = this.position.recordSeq + 1;
    const head = { seq, lsn: this.lsnText(commitLsn), idx };
    this.room(rawLineBound(head, tuple));
    const { end, chain } = sealRawInsert(this.position.chain, head, tuple, this.chunk, this.used, this.eventAt, this.keyAt);
    this.bytes += end - this.used;
    this.used = end;
    this.appended(seq, chain, commitLsn, idx);
    this.keys.addRaw(tuple.buf, this.keyAt, seq);
    if (this.eventAt.end > this.eventAt.start) this.sawEventAt(tuple.buf, this.eventAt.start, this.eventAt.end);
  }

  private appended(seq: number, chain: ChainHash, commitLsn: Lsn, idx: number): void {
    this.count++;
    this.position = { recordSeq: seq, chain, lastLsn: commitLsn, lastIdx: idx };
    if (this.firstLsn === null) this.firstLsn = commitLsn;
  }

  /** Widen the file's event time range by one occurred_at text (ordered as text, like the archive's readers). */
  private sawEventAt(b: Uint8Array, start: number, end: number): void {
    // Copies: the stream's buffers are reused by the protocol parser once this call returns.
    if (this.lastAt === null || compareBytes(b, start, end, this.lastAt) > 0) this.lastAt = new Uint8Array(b.subarray(start, end));
    if (this.firstAt === null || compareBytes(b, start, end, this.firstAt) < 0) this.firstAt = new Uint8Array(b.subarray(start, end));
  }

  get firstEventAt(): string | null {
    return this.firstAt === null ? null : Buffer.from(this.firstAt).toString('latin1');
  }

  get lastEventAt(): string | null {
    return this.lastAt === null ? null : Buffer.from(this.lastAt).toString('latin1');
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

  /**
   * The file's JSON lines (each ending in a newline) as the chunks that hold them, handed over to
   * whoever seals the file (their memory may move to another thread): the batch is finished and
   * must not be read or appended to again.
   */
  take(): Buffer[] {
    const parts = [...this.chunks, this.chunk.subarray(0, this.used)].filter((c) => c.length > 0);
    this.chunks.length = 0;
    this.chunk = Buffer.alloc(0);
    this.used = 0;
    return parts;
  }
}

/** (lsn, idx) at or below the position: already archived, skip it. */
export function alreadyStored(pos: ChainPosition, commitLsn: Lsn, idx: number): boolean {
  if (pos.lastLsn === null) return false;
  return commitLsn < pos.lastLsn || (commitLsn === pos.lastLsn && idx <= pos.lastIdx);
}

/** Lexicographic order of a[start..end) against b, as for latin1 strings. */
function compareBytes(a: Uint8Array, start: number, end: number, b: Uint8Array): number {
  const n = Math.min(end - start, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[start + i]! - b[i]!;
    if (d !== 0) return d;
  }
  return end - start - b.length;
}
