/**
 * Which object each verified digest names, for the inventory (objects no digest names) and for
 * judging a leftover copy. A Set or Map of keys held ~150-250 bytes a file and stops at 2^24
 * entries ("Set maximum size exceeded"): 388 days of a hospital at 5,000 events/s (43,200 files a
 * day). Here a file costs 10 bytes (its commit date and the 64-bit name suffix, in typed arrays
 * allocated 65,536 files at a time), exact, with no limit but memory: 16.7M files take 168 MB.
 * Keys of another shape (a delivery stream's, or one an insider made up) are kept as they are.
 */
const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;
const DAY_MS = 86_400_000;
/** day 0 of the stored dates; 0 in a slot means "no file" */
const EPOCH = Date.UTC(1999, 11, 31);

interface Chunk {
  day: Uint16Array;
  hi: Uint32Array;
  lo: Uint32Array;
}

export class ObjectIndex {
  private readonly chunks = new Map<number, Chunk>();
  /** digest seq -> key, for keys that are not a data key of that same seq */
  private readonly odd = new Map<number, string>();
  private readonly oddKeys = new Set<string>();
  private count = 0;
  private newest = 0;

  /** Digest `seq` names `key`. */
  set(seq: number, key: string): void {
    if (!this.has(seq)) this.count++;
    if (seq > this.newest) this.newest = seq;
    const parts = split(key);
    if (parts && parts.seq === seq) {
      const c = this.chunk(seq, true)!;
      const i = seq & (CHUNK - 1);
      c.day[i] = parts.day;
      c.hi[i] = parts.hi;
      c.lo[i] = parts.lo;
      return;
    }
    this.odd.set(seq, key);
    this.oddKeys.add(key);
  }

  has(seq: number): boolean {
    const c = this.chunk(seq, false);
    return (c !== null && c.day[seq & (CHUNK - 1)] !== 0) || this.odd.has(seq);
  }

  /** The key digest `seq` names, as it named it. */
  get(seq: number): string | undefined {
    const odd = this.odd.get(seq);
    if (odd !== undefined) return odd;
    const c = this.chunk(seq, false);
    const i = seq & (CHUNK - 1);
    if (!c || c.day[i] === 0) return undefined;
    const date = new Date(EPOCH + c.day[i]! * DAY_MS).toISOString().slice(0, 10);
    const suffix = c.hi[i]!.toString(16).padStart(8, '0') + c.lo[i]!.toString(16).padStart(8, '0');
    return `data/dt=${date}/${String(seq).padStart(12, '0')}-${suffix}.jsonl.gz`;
  }

  /** Whether some verified digest names `key` (what a Set of every named key answered). */
  names(key: string): boolean {
    if (this.oddKeys.has(key)) return true;
    const parts = split(key);
    if (!parts) return false;
    const c = this.chunk(parts.seq, false);
    const i = parts.seq & (CHUNK - 1);
    return c !== null && c.day[i] === parts.day && c.hi[i] === parts.hi && c.lo[i] === parts.lo;
  }

  get size(): number {
    return this.count;
  }

  /** the highest digest sequence that names a file */
  get newestSeq(): number {
    return this.newest;
  }

  private chunk(seq: number, create: boolean): Chunk | null {
    const n = Math.floor(seq / CHUNK);
    let c = this.chunks.get(n);
    if (!c && create) {
      c = { day: new Uint16Array(CHUNK), hi: new Uint32Array(CHUNK), lo: new Uint32Array(CHUNK) };
      this.chunks.set(n, c);
    }
    return c ?? null;
  }
}

const DATA_KEY = /^data\/dt=(\d{4})-(\d{2})-(\d{2})\/(\d{12})-([0-9a-f]{8})([0-9a-f]{8})\.jsonl\.gz$/;

/** A data key as numbers, when it has exactly the shape the sealer gives it (keys.ts dataKey). */
function split(key: string): { seq: number; day: number; hi: number; lo: number } | null {
  const m = DATA_KEY.exec(key);
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const ms = Date.UTC(y, mo - 1, d);
  const day = (ms - EPOCH) / DAY_MS;
  // Dates the 16 bits cannot hold, and dates that are not dates (2026-02-31), stay keys.
  if (day < 1 || day > 0xffff || mo < 1 || mo > 12 || new Date(ms).getUTCDate() !== d) return null;
  return { seq: Number(m[4]), day, hi: parseInt(m[5]!, 16), lo: parseInt(m[6]!, 16) };
}
