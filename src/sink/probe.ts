import { digestKey } from './keys.js';
import type { ArchiveReader } from './sink.js';

/**
 * The newest digest, found by probing sequence numbers (1, 2, 4, ... then bisecting) rather than
 * listing years of objects. `from` is a sequence known to exist (the head the database recorded).
 */
export async function findHeadSeq(reader: ArchiveReader, from: number): Promise<number> {
  let lo = from; // exists (or 0)
  let step = 1;
  let hi = lo + step;
  while (await reader.exists(digestKey(hi))) {
    lo = hi;
    step *= 2;
    hi = lo + step;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await reader.exists(digestKey(mid))) lo = mid;
    else hi = mid;
  }
  return lo;
}
