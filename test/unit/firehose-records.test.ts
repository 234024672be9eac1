import { describe, expect, it } from 'vitest';
import { toCalls, toStreamRecords } from '../../src/sink/firehose/records.js';

describe('Firehose records', () => {
  const lines = Array.from({ length: 50 }, (_, i) => `{"chain":"x","seq":${i + 1},"pad":"${'y'.repeat(i * 7)}"}\n`);
  const content = Buffer.from(lines.join(''));

  it('cuts a file into records of whole lines within the limit, losing and adding nothing', () => {
    const records = toStreamRecords(content, 1000);
    expect(records.length).toBeGreaterThan(5);
    expect(Buffer.concat(records).equals(content)).toBe(true);
    for (const r of records) {
      expect(r.length).toBeLessThanOrEqual(1000);
      expect(r[r.length - 1]).toBe(10);
    }
    expect(toStreamRecords(content, content.length)).toHaveLength(1);
  });

  it('refuses a single line larger than a record rather than splitting it', () => {
    expect(() => toStreamRecords(Buffer.from(`${'z'.repeat(2000)}\n`), 1000)).toThrow(/a record line of 2001 bytes exceeds the 1000-byte/);
  });

  it('groups records into calls within the count and byte limits, in order', () => {
    const records = toStreamRecords(content, 400);
    const calls = toCalls(records, 3, 900);
    expect(calls.flat()).toEqual(records);
    for (const c of calls) {
      expect(c.length).toBeLessThanOrEqual(3);
      expect(c.reduce((n, r) => n + r.length, 0)).toBeLessThanOrEqual(900);
    }
  });
});
