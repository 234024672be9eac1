import { describe, expect, it } from 'vitest';
import { IdSet } from '../../src/ship/id-set.js';
import { idsOf } from '../../src/verify/file-check.js';
import type { ArchivedLine } from '../../src/verify/archived.js';

/** What `verify --reconcile` compares: the database's ids against the archive's (src/verify/reconcile.ts). */
const set = (...ids: (number | string)[]) => {
  const s = new IdSet();
  for (const id of ids) s.add(String(id));
  return s;
};

describe('reconcile: ids the archive lacks', () => {
  it('as runs, linear in runs: holes at the start, inside and at the end, overlapping runs, text ids', () => {
    const db = set(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21, 22, 30, 'x', 'y');
    const archive = set(3, 4, 7, 8, 9, 21, 40, 'y');
    expect(db.missingFrom(archive)).toEqual([
      ['1', '2'],
      ['5', '6'],
      ['10', '10'],
      ['20', '20'],
      ['22', '22'],
      ['30', '30'],
      ['x', 'x'],
    ]);
    expect(archive.missingFrom(db)).toEqual([['40', '40']]);
    expect(db.missingFrom(db)).toEqual([]);
    expect(new IdSet().missingFrom(db)).toEqual([]);
  });

  it('agrees with a plain Set on random sets', () => {
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 50; round++) {
      const a = new Set<number>();
      const b = new Set<number>();
      for (let i = 0; i < 300; i++) {
        if (rnd() < 0.8) a.add(i);
        if (rnd() < 0.7) b.add(i);
      }
      const expected = [...a].filter((i) => !b.has(i));
      const runs = set(...a).missingFrom(set(...b));
      const got = runs.flatMap(([s, e]) => Array.from({ length: Number(e) - Number(s) + 1 }, (_, k) => Number(s) + k));
      expect(got).toEqual(expected);
      for (let k = 1; k < runs.length; k++) expect(Number(runs[k]![0])).toBeGreaterThan(Number(runs[k - 1]![1]) + 1); // runs are maximal
    }
  });

  it("a file's ids: its inserts' ids as sorted runs, others as text, other records left out", () => {
    const line = (record: Record<string, unknown>) => ({ record }) as unknown as ArchivedLine;
    const lines = [
      line({ op: 'insert', id: '12' }),
      line({ op: 'insert', id: '10' }),
      line({ op: 'insert', id: '11' }),
      line({ op: 'read', row_id: '5' }),
      line({ op: 'insert', id: '15' }),
      line({ op: 'update', id: '3', tamper: true }),
      line({ op: 'insert', id: '007' }),
      line({ op: 'marker' }),
    ];
    expect(idsOf(lines)).toEqual({ runs: [10, 12, 15, 15], text: ['007'] });
  });
});
