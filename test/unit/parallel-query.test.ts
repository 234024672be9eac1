import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { EVERYTHING, type Query } from '../../src/query/filter.js';
import { scanArchive, type ScanReport } from '../../src/query/scan.js';
import { keygen, loadSigningKey, loadVerifyKey } from '../../src/seal/keys.js';
import { fileArchive } from '../../src/sink/file/file-archive.js';
import type { ArchiveReader } from '../../src/sink/sink.js';
import { buildSyntheticArchive, TARGET } from '../../bench/synthetic-archive.js';
import { CASES } from '../conformance/cases.js';
import { keysFor } from '../conformance/judge.js';
import { memoryReader } from '../conformance/build.js';
import type { VerifyKey } from '../../src/seal/keys.js';

// Workers run the built script (tsc's output): a worker thread cannot load these TypeScript sources.
const WORKER = path.resolve('dist/src/query/query-worker.js');

/** A search as its user sees it: the report (sets as sorted lists) and every file's matches, in the order they were shown. */
async function search(reader: ArchiveReader, keys: Map<string, VerifyKey>, query: Query, workers: number, queueLimit?: number) {
  const shown: { file: number; bytes: number; seqs: number[]; lines: string[] }[] = [];
  const report: ScanReport = await scanArchive(reader, {
    keys,
    query,
    maxCommitDelayMs: 86_400_000,
    workers,
    workerScript: WORKER,
    queueLimit,
    onMatches: (f, m) => void shown.push({ file: f.digest.file_seq, bytes: f.body.length, seqs: m.map((l) => l.record.seq), lines: m.map((l) => l.line) }),
  });
  return { report: { ...report, keyIds: [...report.keyIds].sort(), failedFiles: [...report.failedFiles].sort((a, b) => a - b) }, shown };
}

const QUERIES: Query[] = [EVERYTHING, { ...EVERYTHING, actions: ['UPDATE'] }, { ...EVERYTHING, appUser: 'dr.alice' }, { ...EVERYTHING, customer: '4711' }];

describe('query with worker threads: the same answer as one thread', () => {
  for (const c of CASES) {
    it(`${c.name}: every query, 0 and 2 workers`, async () => {
      const objects = await c.build();
      for (const q of QUERIES) {
        const one = await search(memoryReader(objects), keysFor(c.keys), q, 0);
        const two = await search(memoryReader(objects), keysFor(c.keys), q, 2);
        expect(two).toEqual(one);
        // the walk held back behind each file being checked: still the same answer
        expect(await search(memoryReader(objects), keysFor(c.keys), q, 2, 1)).toEqual(one);
      }
    });
  }

  it('a synthetic archive with a file altered in the middle: the same matches, notes and failed files', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pgas-pquery-'));
    const k = await keygen(path.join(dir, 'keys'));
    const a = await buildSyntheticArchive(path.join(dir, 'archive'), 60_000, await loadSigningKey(k.signingKeyPath), () => undefined);
    const dataDir = path.join(a.root, 'data');
    const day = readdirSync(dataDir)[0]!;
    const victim = path.join(dataDir, day, readdirSync(path.join(dataDir, day)).sort()[2]!);
    const lines = gunzipSync(await readFile(victim))
      .toString('utf8')
      .split('\n');
    lines[7] = lines[7]!.replace('"UPDATE"', '"SELECT"').replace('"INSERT"', '"SELECT"');
    await writeFile(victim, gzipSync(lines.join('\n')));
    const vk = await loadVerifyKey(k.verifyKeyPath);
    const keys = new Map([[vk.keyId, vk]]);
    // p9101: a patient in four of the six files (a search by an indexed key that reads several, skips some)
    for (const q of [EVERYTHING, { ...EVERYTHING, actions: ['UPDATE'] }, { ...EVERYTHING, customer: TARGET }, { ...EVERYTHING, customer: 'p9101' }]) {
      const one = await search(fileArchive(a.root).reader, keys, q, 0);
      const two = await search(fileArchive(a.root).reader, keys, q, 2);
      expect(two).toEqual(one);
      expect(await search(fileArchive(a.root).reader, keys, q, 2, 1)).toEqual(one);
      if (q.customer === 'p9101') {
        expect(one.report.filesRead).toBeGreaterThanOrEqual(2);
        expect(one.report.filesSkippedByIndex).toBeGreaterThanOrEqual(1);
        expect(one.report.filesRead + one.report.filesSkippedByIndex).toBe(a.files);
      }
      if (q === EVERYTHING) {
        expect(one.report.failedFiles).toEqual([3]);
        expect(one.report.matches).toBeGreaterThan(40_000);
      }
    }
  });
});
