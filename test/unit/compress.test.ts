import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { pack } from '../../src/seal/compress.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('pack: a file hashed and compressed in the worker thread', () => {
  it('hashes the lines, gzips them, hashes the gzip, from chunks of any size', async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `{"seq":${i},"note":"${'x'.repeat(i % 50)}"}\n`).join('');
    const whole = Buffer.from(lines);
    // A big owned chunk (handed over), a small one (copied), and a pooled slice.
    const chunks = [Buffer.from(whole.subarray(0, 100_000)), Buffer.from(whole.subarray(100_000, 100_010)), whole.subarray(100_010)];
    const packed = await pack(chunks, false);
    expect(packed.contentSha256).toBe(sha(whole));
    expect(gunzipSync(packed.body).equals(whole)).toBe(true);
    expect(packed.bodySha256).toBe(sha(packed.body));
    expect(chunks[0]!.length).toBe(0); // handed over: its memory now belongs to the worker
  });

  it('leaves the lines as they are for a delivery stream', async () => {
    const lines = Buffer.from('{"a":1}\n{"b":2}\n');
    const packed = await pack([lines], true);
    expect(packed.body.equals(Buffer.from('{"a":1}\n{"b":2}\n'))).toBe(true);
    expect(packed.bodySha256).toBe(packed.contentSha256);
    expect(packed.contentSha256).toBe(sha(packed.body));
  });

  it('answers calls in flight each with its own file', async () => {
    const files = Array.from({ length: 8 }, (_, i) => Buffer.from(`file ${i}\n`.repeat(1000 + i)));
    const packed = await Promise.all(files.map((f) => pack([Buffer.from(f)], false)));
    packed.forEach((p, i) => expect(gunzipSync(p.body).equals(files[i]!)).toBe(true));
  });
});
