import { describe, expect, it } from 'vitest';
import { verifyArchive, type ArchiveVerdict } from '../../src/verify/archive.js';
import { mergeShards, parseShard, verifyShard, type ShardReport } from '../../src/verify/shards.js';
import type { Finding } from '../../src/verify/findings.js';
import { attest, CASES, OLD_ROW, receipt } from '../conformance/cases.js';
import { chainOptions, keysFor } from '../conformance/judge.js';
import { auditRow, buildArchive, memoryReader, resetIds, type Objects, type RecordSpec } from '../conformance/build.js';

/** A verdict as an auditor reads it: findings and notes as sets (their order is not part of it), the rest as is. */
function canonical(v: ArchiveVerdict) {
  const sorted = (fs: Finding[]) => fs.map((f) => JSON.stringify(f)).sort();
  const c = v.chain;
  return {
    findings: sorted(v.findings),
    notes: sorted(v.notes),
    acknowledged: sorted(v.acknowledged),
    chain: { files: c.files, heartbeats: c.heartbeats, records: c.records, first: c.firstEventAt, last: c.lastEventAt, head: c.head, headSha256: c.headSha256 },
  };
}

async function sharded(objects: Objects, opts: Parameters<typeof verifyArchive>[1], count: number, blockFiles: number): Promise<ArchiveVerdict> {
  const reports: unknown[] = [];
  // Reports travel as JSON between machines: the merge gets them as parsed JSON, in any order.
  for (let i = count - 1; i >= 0; i--) {
    const r = await verifyShard(memoryReader(objects), 'memory://case', { ...opts, shard: { index: i, count, blockFiles } });
    reports.push(JSON.parse(JSON.stringify(r)));
  }
  return mergeShards(reports).verdict;
}

describe('verify --shard and verify merge: the verdict of one run over the whole archive', () => {
  for (const c of CASES) {
    it(`${c.name}: shards of 1, 2 and 3 files a block, 2 and 3 shards, merged = unsharded`, async () => {
      const objects = await c.build();
      const opts = chainOptions(keysFor(c.keys), c.args ? await c.args(objects) : {});
      const whole = canonical(await verifyArchive(memoryReader(objects), opts));
      expect(whole.findings.length === 0).toBe(c.expected.ok);
      for (const [count, blockFiles] of [
        [2, 1],
        [3, 1],
        [2, 2],
        [3, 3],
      ] as const) {
        expect(canonical(await sharded(objects, opts, count, blockFiles)), `${count} shards, ${blockFiles} files a block`).toEqual(whole);
      }
    });
  }

  it('a tamper run, receipts and attestations that cross files join as one run reading everything would see them', async () => {
    // The corpus's cross-file records sit in one file; here every one of them crosses a file boundary.
    resetIds();
    const del = (lsn: string, idx: number): RecordSpec => ({
      op: 'delete',
      lsn,
      idx,
      row: null,
      extra: { tamper: true, old: { ...OLD_ROW, id: String(idx + 1) } },
    });
    const at = (r: RecordSpec, lsn: string, idx: number): RecordSpec => ({ ...r, lsn, idx });
    const ins = (lsn: string, idx: number): RecordSpec => ({ op: 'insert', lsn, idx, row: auditRow() });
    const objects = await buildArchive([
      {
        records: [ins('0/1000000', 0), at(attest(0, '09:10:00', 'O'), '0/1000000', 1), at(receipt(0, 0, 4096), '0/1000000', 2)],
        createdAt: '2026-03-02T09:15:05.000Z',
        ackLsn: '0/1000100',
      },
      // one DELETE of four audit_log rows, cut across two files: one tamper finding of 4 rows
      { records: [del('0/2000000', 0), del('0/2000000', 1)], createdAt: '2026-03-02T09:15:06.000Z', ackLsn: '0/1000100' },
      {
        records: [del('0/2000000', 2), del('0/2000000', 3), at(receipt(0, 4096, 8192), '0/3000000', 0)],
        createdAt: '2026-03-02T09:15:07.000Z',
        ackLsn: '0/3000100',
      },
      // the trigger disabled since file 1's attestation; bytes 8192-9000 never ingested
      {
        records: [at(attest(0, '09:20:00', 'D'), '0/4000000', 0), at(receipt(0, 9000, 9500), '0/4000000', 1)],
        createdAt: '2026-03-02T09:20:05.000Z',
        ackLsn: '0/4000100',
      },
      { records: [ins('0/5000000', 0)], createdAt: '2026-03-02T09:21:05.000Z', ackLsn: '0/5000100' },
    ]);
    const opts = { keys: keysFor(['A']) };
    const whole = await verifyArchive(memoryReader(objects), opts);
    expect(whole.findings.map((f) => f.code).sort()).toEqual(['capture-changed', 'ingest-skipped', 'tamper']);
    expect(whole.findings.find((f) => f.code === 'tamper')!.detail).toMatchObject({ count: 4, first_seq: 4, last_seq: 7 });
    for (const [count, blockFiles] of [
      [2, 1],
      [3, 1],
      [5, 1],
      [2, 2],
    ] as const) {
      expect(canonical(await sharded(objects, opts, count, blockFiles)), `${count} shards, ${blockFiles} files a block`).toEqual(canonical(whole));
    }
  });

  it('refuses reports that do not make one whole: a shard missing, twice, of another split, of another archive, other heads', async () => {
    const c = CASES.find((x) => x.name === 'valid-basic')!;
    const objects = await c.build();
    const run = (index: number, count: number, archive = 'memory://a') =>
      verifyShard(memoryReader(objects), archive, { keys: keysFor(c.keys), shard: { index, count, blockFiles: 1 } }).then(
        (r) => JSON.parse(JSON.stringify(r)) as ShardReport,
      );
    const [a, b, ofThree, otherArchive] = [await run(0, 2), await run(1, 2), await run(1, 3), await run(1, 2, 'memory://b')];
    expect(mergeShards([a, b]).verdict.findings).toEqual([]);
    expect(() => mergeShards([a])).toThrow(/1 of 2 shard reports missing \(shards 1\)/);
    expect(() => mergeShards([a, a, b])).toThrow(/shard 0\/2 is given twice/);
    expect(() => mergeShards([a, ofThree])).toThrow(/shards of two splits/);
    expect(() => mergeShards([a, otherArchive])).toThrow(/shards of two archives/);
    expect(() => mergeShards([a, { ...b, frame: { ...b.frame, last_seq: 99 } }])).toThrow(
      /found the archive to end at different files \(\d+ and 99\).*--through/,
    );
    expect(() => mergeShards([a, { ...b, blocks: [] }])).toThrow(/shard 1\/2 does not report block 1 \(files 2-2\): its report is incomplete/);
    expect(() => mergeShards([a, { ...b, blocks: [...b.blocks, { ...b.blocks[0]!, block: 99 }] }])).toThrow(
      /reports block 99, which is not its own|past the end/,
    );
    const short = { ...b, blocks: b.blocks.map((x) => ({ ...x, files_read: 0 })) };
    expect(() => mergeShards([a, short])).toThrow(/the shards read \d+ files, their digests name \d+/);
    expect(() => mergeShards([{ hello: 1 }])).toThrow(/not a shard report/);
  });

  it('parses I/N', () => {
    expect(parseShard('1/4')).toMatchObject({ index: 1, count: 4 });
    expect(parseShard('4/4')).toBeNull();
    expect(parseShard('x')).toBeNull();
    expect(parseShard('0/0')).toBeNull();
  });
});
