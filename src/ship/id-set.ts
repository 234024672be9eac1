/**
 * audit_log ids already archived, which slot-loss recovery and a restarted backfill skip. The archive
 * holds every id ever written (six years of them), so a Set of numbers (about 30 bytes an id: 1.35M
 * ids took 40 MiB) grows without bound and would end a heap-limited shipper in the middle of a
 * recovery. The ids come from one sequence and are nearly contiguous: they are kept as sorted runs
 * [start, end], 16 bytes a run, whatever the run's length (a run breaks only where a rolled-back
 * write consumed ids). Ids arrive in commit order, not id order: they are buffered (8 bytes each,
 * at most BUFFER of them) and merged into the runs when the buffer fills or the set is read.
 * Ids that are not whole numbers below 2^53 (never from a PostgreSQL bigserial before 9 * 10^15)
 * are kept as text.
 */
/** ids buffered between merges: 2 MiB; each merge passes over every run */
const BUFFER = 1 << 18;

export class IdSet {
  private starts = new Float64Array(0);
  private ends = new Float64Array(0);
  private buffer = new Float64Array(BUFFER);
  private buffered = 0;
  private readonly text = new Set<string>();
  private count = 0;

  add(id: string): void {
    const n = asNumber(id);
    if (n === null) {
      if (!this.text.has(id)) {
        this.text.add(id);
        this.count++;
      }
      return;
    }
    if (this.buffered === this.buffer.length) this.merge();
    this.buffer[this.buffered++] = n;
  }

  /** Every whole number from `start` to `end`. */
  addRun(start: number, end: number): void {
    for (let n = start; n <= end; n++) {
      if (this.buffered === this.buffer.length) this.merge();
      this.buffer[this.buffered++] = n;
    }
  }

  has(id: string): boolean {
    const n = asNumber(id);
    if (n === null) return this.text.has(id);
    if (this.buffered > 0) this.merge();
    // the last run starting at or before n
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! <= n) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi >= 0 && n <= this.ends[hi]!;
  }

  /** distinct ids */
  get size(): number {
    if (this.buffered > 0) this.merge();
    return this.count;
  }

  /** runs held (for memory accounting in tests and logs) */
  get runs(): number {
    if (this.buffered > 0) this.merge();
    return this.starts.length;
  }

  /**
   * The ids held here and not in `other`, as runs [first, last] in ascending order (ids kept as
   * text come last, each a run of its own). Linear in both sets' runs, not in their ids.
   */
  missingFrom(other: IdSet): Array<[string, string]> {
    if (this.buffered > 0) this.merge();
    if (other.buffered > 0) other.merge();
    const out: Array<[string, string]> = [];
    let j = 0;
    for (let i = 0; i < this.starts.length; i++) {
      let s = this.starts[i]!;
      const e = this.ends[i]!;
      while (s <= e) {
        while (j < other.starts.length && other.ends[j]! < s) j++;
        if (j === other.starts.length || other.starts[j]! > e) {
          out.push([String(s), String(e)]);
          break;
        }
        if (other.starts[j]! > s) out.push([String(s), String(other.starts[j]! - 1)]);
        s = other.ends[j]! + 1;
      }
    }
    for (const t of this.text) if (!other.text.has(t)) out.push([t, t]);
    return out;
  }

  /** Sort the buffered ids and merge them into the runs (duplicates count once). */
  private merge(): void {
    const points = this.buffer.subarray(0, this.buffered).sort();
    this.buffered = 0;
    const starts: number[] = [];
    const ends: number[] = [];
    let added = 0;
    const push = (s: number, e: number): void => {
      const last = starts.length - 1;
      if (last >= 0 && s <= ends[last]! + 1) {
        if (e > ends[last]!) ends[last] = e;
      } else {
        starts.push(s);
        ends.push(e);
      }
    };
    let r = 0;
    for (let i = 0; i < points.length; i++) {
      const p = points[i]!;
      if (i > 0 && p === points[i - 1]) continue;
      while (r < this.starts.length && this.starts[r]! <= p) {
        push(this.starts[r]!, this.ends[r]!);
        r++;
      }
      const last = ends.length - 1;
      if (last < 0 || p > ends[last]!) added++; // not inside a run already held
      push(p, p);
    }
    for (; r < this.starts.length; r++) push(this.starts[r]!, this.ends[r]!);
    this.starts = Float64Array.from(starts);
    this.ends = Float64Array.from(ends);
    this.count += added;
  }
}

function asNumber(id: string): number | null {
  const n = Number(id);
  return Number.isSafeInteger(n) && n >= 0 && String(n) === id ? n : null;
}
