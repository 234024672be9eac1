import { describe, expect, it } from 'vitest';
import { digestKey } from '../../src/sink/keys.js';
import { checkTask, isNotable } from '../../src/verify/file-check.js';
import { checkFile } from '../../src/verify/file.js';
import { DigestWalk } from '../../src/verify/links.js';
import { CASES } from '../conformance/cases.js';
import { keysFor } from '../conformance/judge.js';

/**
 * `verify` keeps only the records it hands back (the notable ones) while it checks a file, and
 * checks the rest one at a time (RecordsCheck): the findings must be exactly those of a check that
 * keeps every record, on every file of every conformance archive, altered ones included.
 */
describe('a file checked keeping only its notable records: the same findings as keeping all', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const objects = await c.build();
      const seqs = [...objects.keys()].filter((k) => k.startsWith('digests/')).map((k) => Number(/(\d+)\.digest$/.exec(k)![1]));
      const first = Math.min(...seqs);
      const walk = new DigestWalk(keysFor(c.keys), first === 1 ? 'genesis' : 'anchor');
      let files = 0;
      for (let seq = first; seq <= Math.max(...seqs); seq++) {
        const step = walk.step(seq, objects.get(digestKey(seq)) ?? null);
        const d = step.digest;
        if (!d || d.kind !== 'data' || !d.object_key) continue;
        const task = { body: objects.get(d.object_key) ?? null, digest: d, before: step.before };
        const all = checkFile(task.body, d, task.before);
        const some = checkFile(task.body, d, task.before, isNotable);
        expect(some.findings).toEqual(all.findings);
        expect(some.records).toBe(all.records);
        expect(all.records).toBe(all.lines.length);
        expect(some.lines).toEqual(all.lines.filter(isNotable));
        const lean = checkTask(task, { lines: false, ids: false });
        const full = checkTask(task, { lines: true, ids: false });
        expect(lean.findings).toEqual(full.findings);
        expect(lean.records).toBe(full.records);
        expect(lean.notable).toEqual(full.notable);
        files++;
      }
      expect(files, 'the case has data files to check').toBeGreaterThan(0);
    });
  }
});
