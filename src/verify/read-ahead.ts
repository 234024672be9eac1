import type { Digest } from '../seal/digest.js';
import { parseStreamKey } from '../sink/keys.js';
import type { ArchiveReader } from '../sink/sink.js';

/**
 * Fetch the next files while this one is checked, so storage round trips overlap hashing and
 * parsing. Bounded (a few objects in memory at most); what is fetched ahead is only bytes: every
 * check still happens, in order, on what `take` returns. Streamed (Firehose) files are gathered
 * in order by their reader and are never fetched ahead.
 */
export class ReadAhead {
  private readonly pending = new Map<string, Promise<Buffer | null>>();

  constructor(
    private readonly reader: ArchiveReader,
    private readonly limit = 4,
  ) {}

  /** Start fetching `key` (unless already on its way, or the limit is reached); its bytes when they arrive. */
  start(key: string): Promise<Buffer | null> | null {
    const known = this.pending.get(key);
    if (known) return known;
    if (this.pending.size >= this.limit || parseStreamKey(key)) return null;
    const p = this.reader.get(key);
    p.catch(() => undefined); // awaited (and its error raised) by take(), if ever taken
    this.pending.set(key, p);
    return p;
  }

  /** The object's bytes: from a fetch already started, or fetched now. */
  take(key: string): Promise<Buffer | null> {
    const p = this.pending.get(key);
    if (!p) return this.reader.get(key);
    this.pending.delete(key);
    return p;
  }
}

/** A digest's fields read without checking anything: only to decide what to fetch early. */
export function peekDigest(digestBytes: Buffer | null): Partial<Digest> | null {
  if (!digestBytes) return null;
  try {
    return JSON.parse(digestBytes.subarray(0, digestBytes.indexOf(10)).toString('utf8')) as Partial<Digest>;
  } catch {
    return null;
  }
}

/** The data object a digest names, read without checking anything (only to fetch it early). */
export function objectKeyOf(digestBytes: Buffer | null): string | null {
  const key = peekDigest(digestBytes)?.object_key;
  return typeof key === 'string' ? key : null;
}
