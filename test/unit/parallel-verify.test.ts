import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifyArchive } from '../../src/verify/archive.js';
import type { ArchivedIds } from '../../src/verify/file-check.js';
import { CASES } from '../conformance/cases.js';
import { chainOptions, keysFor } from '../conformance/judge.js';
import { memoryReader } from '../conformance/build.js';

// The workers run the built script (tsc's output): a worker thread cannot load the TypeScript
// sources this test runs. `npm test` builds before it tests.
const WORKER = path.resolve('dist/src/verify/verify-worker.js');

describe('verify with worker threads: the same verdict as one thread', () => {
  it('the built worker script exists (npm run build)', () => {
    expect(existsSync(WORKER)).toBe(true);
  });

  for (const c of CASES) {
    it(`${c.name}: identical report with 0, 1 and 3 workers`, async () => {
      const objects = await c.build();
      const opts = chainOptions(keysFor(c.keys), c.args ? await c.args(objects) : {});
      const one = await verifyArchive(memoryReader(objects), opts);
      for (const workers of [1, 3]) {
        const many = await verifyArchive(memoryReader(objects), { ...opts, workers, workerScript: WORKER, workerMinFiles: 0 });
        expect(many).toEqual(one);
      }
      // The case's own verdict holds (a comparison of two empty reports would prove nothing).
      expect(one.findings.length === 0).toBe(c.expected.ok);
    });
  }

  it('the audit_log ids of every file read (verify --reconcile) are the same with workers as without, and are what the files hold', async () => {
    const c = CASES.find((x) => x.name === 'vectors-every-kind')!;
    const objects = await c.build();
    const collect = async (workers: number) => {
      const ids: ArchivedIds[] = [];
      await verifyArchive(memoryReader(objects), {
        ...chainOptions(keysFor(c.keys), {}),
        workers,
        workerScript: WORKER,
        workerMinFiles: 0,
        onArchivedIds: (i) => ids.push(i),
      });
      return ids;
    };
    const inline = await collect(0);
    expect(await collect(2)).toEqual(inline);
    // docs/format.md's vectors: inserts 1 and 2, then 3 (an acknowledgement), then 4 (slot-lost backfill)
    expect(inline).toEqual([
      { runs: [1, 2], text: [] },
      { runs: [3, 3], text: [] },
      { runs: [4, 4], text: [] },
    ]);
  });

  it('a worker that dies fails the run (no verdict over files nobody checked)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'dying-worker-'));
    const script = path.join(dir, 'worker.mjs');
    await writeFile(script, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => process.exit(3));\n");
    const valid = CASES.find((c) => c.name === 'valid-basic')!;
    const objects = await valid.build();
    await expect(verifyArchive(memoryReader(objects), { keys: keysFor(valid.keys), workers: 2, workerScript: script, workerMinFiles: 0 })).rejects.toThrow(
      /worker thread stopped \(exit code 3\)/,
    );
  });

  it('a worker that throws on a file fails the run with the file named', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'throwing-worker-'));
    const script = path.join(dir, 'worker.mjs');
    await writeFile(
      script,
      "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', (m) => parentPort.postMessage({ id: m.id, error: `checking file ${m.digest.file_seq} failed: boom` }));\n",
    );
    const valid = CASES.find((c) => c.name === 'valid-basic')!;
    const objects = await valid.build();
    await expect(verifyArchive(memoryReader(objects), { keys: keysFor(valid.keys), workers: 1, workerScript: script, workerMinFiles: 0 })).rejects.toThrow(
      /checking file 1 failed: boom/,
    );
  });
});
