import { describe, expect, it } from 'vitest';
import { ObjectIndex } from '../../src/verify/object-index.js';
import { dataKey, streamKey } from '../../src/sink/keys.js';

const sha = (n: number): string => (n * 2654435761 + 0x9e3779b9).toString(16).padStart(16, '0').slice(-16) + '0'.repeat(48);

describe('ObjectIndex: which object each verified digest names, in 10 bytes a file', () => {
  it('answers as a Set of keys and a Map of sequences did, exactly', () => {
    const ix = new ObjectIndex();
    const k5 = dataKey(5, '2026-03-02', sha(5));
    ix.set(5, k5);
    expect(ix.names(k5)).toBe(true);
    expect(ix.get(5)).toBe(k5);
    expect(ix.has(5)).toBe(true);
    expect(ix.has(6)).toBe(false);
    // Same sequence, another name suffix or date: not named.
    expect(ix.names(dataKey(5, '2026-03-02', sha(6)))).toBe(false);
    expect(ix.names(dataKey(5, '2026-03-03', sha(5)))).toBe(false);
    expect(ix.names(dataKey(6, '2026-03-02', sha(5)))).toBe(false);
    expect(ix.names('data/other.bin')).toBe(false);
    // A digest naming another sequence's key (an insider's), a stream's key, a date outside 16 bits: kept as they are.
    const odd = dataKey(7, '2026-03-02', sha(7));
    ix.set(8, odd);
    expect(ix.names(odd)).toBe(true);
    expect(ix.get(8)).toBe(odd);
    expect(ix.has(7)).toBe(false);
    const stream = streamKey('audit', 9);
    ix.set(9, stream);
    expect(ix.get(9)).toBe(stream);
    const far = dataKey(10, '2300-01-01', sha(10));
    ix.set(10, far);
    expect(ix.names(far)).toBe(true);
    expect(ix.size).toBe(4);
    expect(ix.newestSeq).toBe(10);
  });

  it('holds more files than a Set can (2^24) in a bounded amount of memory', () => {
    const n = 2 ** 24 + 1000;
    const ix = new ObjectIndex();
    const before = process.memoryUsage();
    for (let seq = 1; seq <= n; seq++)
      ix.set(seq, `data/dt=2026-03-02/${String(seq).padStart(12, '0')}-${(seq >>> 0).toString(16).padStart(16, '0')}.jsonl.gz`);
    const after = process.memoryUsage();
    expect(ix.size).toBe(n);
    expect(ix.names(`data/dt=2026-03-02/${String(n).padStart(12, '0')}-${n.toString(16).padStart(16, '0')}.jsonl.gz`)).toBe(true);
    expect(ix.names(`data/dt=2026-03-02/${String(n).padStart(12, '0')}-${(n + 1).toString(16).padStart(16, '0')}.jsonl.gz`)).toBe(false);
    // 10 bytes a file in typed arrays (outside the JS heap), where a Set of keys took ~150.
    const grown = after.arrayBuffers - before.arrayBuffers;
    expect(grown / n).toBeGreaterThan(9);
    expect(grown / n).toBeLessThan(12);
  });
});
