import { describe, expect, it } from 'vitest';
import { verifyArchive } from '../../src/verify/archive.js';
import { DIGEST_FOLLOWS_MS } from '../../src/verify/inventory.js';
import { digestKey } from '../../src/sink/keys.js';
import type { ArchiveReader } from '../../src/sink/sink.js';
import { CASES, digestOf } from '../conformance/cases.js';
import { chainOptions, keysFor } from '../conformance/judge.js';
import { memoryReader, type Objects } from '../conformance/build.js';

/**
 * verify beside a running shipper: the chain is walked first, the inventory listed after, and a
 * file the shipper stores in between is past the walk's head. Simulated by a reader whose listing
 * of digests misses the newest one while the chain is walked (it was not there yet) and shows it
 * afterwards; the objects are the conformance corpus's valid archive.
 */
function liveReader(objects: Objects, hidden: string): ArchiveReader {
  const base = memoryReader(objects);
  let walking = true;
  return {
    get: base.get,
    exists: base.exists,
    async *list(prefix, startAfter) {
      if (prefix === '') walking = false; // the inventory lists everything: the walk is over
      for await (const k of base.list(prefix, startAfter)) if (!(walking && k === hidden)) yield k;
    },
  };
}

describe('a file sealed while verify walks', () => {
  const valid = CASES.find((c) => c.name === 'valid-basic')!;

  it('is a note for the next run, not a finding, when its digest is there by the time the inventory reaches it', async () => {
    const objects = await valid.build();
    const opts = chainOptions(keysFor(valid.keys), valid.args ? await valid.args(objects) : {});
    const last = Math.max(...[...objects.keys()].filter((k) => k.startsWith('digests/')).map((k) => Number(/(\d+)/.exec(k)![1])));
    const v = await verifyArchive(liveReader(objects, digestKey(last)), opts);
    expect(v.findings).toEqual([]);
    expect(v.chain.head?.file_seq).toBe(last - 1);
    expect(v.notes.map((n) => [n.code, n.where])).toEqual([['sealed-after-walk', digestOf(objects, last).object_key]]);
  });

  it('is still a finding when no digest comes for it (a shipper stopped between the two writes, or an added file)', async () => {
    const objects = await valid.build();
    const opts = chainOptions(keysFor(valid.keys), valid.args ? await valid.args(objects) : {});
    const last = Math.max(...[...objects.keys()].filter((k) => k.startsWith('digests/')).map((k) => Number(/(\d+)/.exec(k)![1])));
    const dataKey = digestOf(objects, last).object_key!;
    objects.delete(digestKey(last));
    const started = Date.now();
    const v = await verifyArchive(memoryReader(objects), opts);
    expect(Date.now() - started).toBeGreaterThanOrEqual(DIGEST_FOLLOWS_MS - 50); // it waited for the digest once
    expect(v.findings.map((f) => [f.code, f.where])).toEqual([['unreferenced-object', dataKey]]);
    expect(v.findings[0]!.message).toMatch(/stored without its digest/);
  });
});
