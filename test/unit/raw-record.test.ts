import { describe, expect, it } from 'vitest';
import { Batch } from '../../src/seal/batch.js';
import { GENESIS_CHAIN } from '../../src/seal/record.js';
import { tupleLayout } from '../../src/seal/raw-record.js';
import type { Lsn } from '../../src/source/lsn.js';
import { insertMessage } from '../helpers/pgoutput.js';

/** A batch's JSON lines (this finishes the batch). */
const lines = (b: Batch) => Buffer.concat(b.take()).toString('utf8');
const COLUMNS = ['id', 'occurred_at', 'source', 'action', 'statement', 'app_user_id', 'error'];
const SAMPLES: (string | null)[][] = [
  ['1', '2026-11-27 02:11:09.129119+00', 'trigger', 'INSERT', null, 'dr.smith', null],
  ['2', '2026-11-27 02:11:09+00', 'pgaudit', 'SELECT', 'SELECT "x" FROM t WHERE a = \'b\\c\'', 'nurse "joy"', 'line1\nline2\ttab\u0001'],
  ['3', '2026-11-27 02:11:10.5+00', 'pgaudit', 'SELECT', "SELECT * FROM patients WHERE name = 'Zoë Ünal 🙂'", '\u2028 sep', ''],
  ['4', '2026-11-27 02:11:11+00', 'trigger', 'DELETE', 'x'.repeat(5000), null, '\u007f del'],
];

describe('the raw insert path writes exactly what the general path writes', () => {
  it('for plain, escaped, non-ASCII, empty and NULL values, across a batch', () => {
    const start = { recordSeq: 41, chain: GENESIS_CHAIN, lastLsn: null, lastIdx: -1 };
    const viaRow = new Batch(start, '2026-11-27');
    const viaBytes = new Batch(start, '2026-11-27');
    const layout = tupleLayout(16_384, COLUMNS);
    SAMPLES.forEach((values, idx) => {
      const lsn = BigInt(0x16b3f40 + idx * 0x100) as Lsn;
      viaRow.append({ op: 'insert', commitLsn: lsn, idx, row: Object.fromEntries(COLUMNS.map((c, i) => [c, values[i]!])) });
      // The message sits inside a larger buffer, as in the replication stream.
      const msg = Buffer.concat([Buffer.from('padding'), insertMessage(16_384, values)]);
      viaBytes.appendInsert(lsn, idx, { buf: msg.subarray(7), offset: 6, layout });
    });
    expect(lines(viaBytes)).toBe(lines(viaRow));
    expect(viaBytes.position).toEqual(viaRow.position);
    expect([viaBytes.firstEventAt, viaBytes.lastEventAt, viaBytes.bytes, viaBytes.count]).toEqual([
      viaRow.firstEventAt,
      viaRow.lastEventAt,
      viaRow.bytes,
      viaRow.count,
    ]);
    expect(viaBytes.firstEventAt).toBe('2026-11-27 02:11:09+00');
  });

  it('grows its buffers for a batch larger than the first chunk', () => {
    const layout = tupleLayout(1, COLUMNS);
    const a = new Batch({ recordSeq: 0, chain: GENESIS_CHAIN, lastLsn: null, lastIdx: -1 }, '2026-11-27');
    const b = new Batch({ recordSeq: 0, chain: GENESIS_CHAIN, lastLsn: null, lastIdx: -1 }, '2026-11-27');
    for (let i = 0; i < 3000; i++) {
      const values = [String(i), '2026-11-27 02:11:09+00', 'trigger', 'UPDATE', null, `user${i % 7}`, null];
      a.append({ op: 'insert', commitLsn: 0x1000n as Lsn, idx: i, row: Object.fromEntries(COLUMNS.map((c, j) => [c, values[j]!])) });
      b.appendInsert(0x1000n as Lsn, i, { buf: insertMessage(1, values), offset: 6, layout });
    }
    expect(b.bytes).toBeGreaterThan(256 * 1024);
    expect(lines(b)).toBe(lines(a));
  });
});
