import { execFileSync } from 'node:child_process';
import { appendFile, chmod, copyFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { signDigest, type Digest } from '../../src/seal/digest.js';
import { chainHash, openRecord, type ChainHash } from '../../src/seal/record.js';
import { loadSigningKey } from '../../src/seal/keys.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';
import { makeKeys, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';

let keys: TestKeys;
let other: TestKeys;
let db: { name: string; url: string };
let pristine: string;
const slot = () => `s_${db.name}`;

beforeAll(async () => {
  keys = await makeKeys();
  other = await makeKeys();
  db = await freshDatabase('verify');
  pristine = await tempArchiveDir();
  await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series(1, 50) g`));
  const ship = (extra: string[] = []) =>
    runCli(shipArgs({ archive: `file://${pristine}`, keys, extra: ['--drain', '--slot', slot(), '--batch-max-records', '100', ...extra] }), {
      DATABASE_URL: urlFor(db.name, 'ship_login'),
    });
  expect((await ship()).code).toBe(0);
  for (let i = 0; i < 5; i++) {
    await withClient(db.url, (c) =>
      c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series($1::int, $1::int + 99) g`, [1000 + i * 100]),
    );
  }
  expect((await ship()).code).toBe(0);
});

async function copyArchive(): Promise<string> {
  const dir = await tempArchiveDir();
  execFileSync('cp', ['-a', pristine, dir]);
  for (const f of await walk(dir)) await chmod(f, 0o644);
  return dir;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out.sort();
}

/**
 * The data files that hold events, in order. A file of one record (the attestation each shipper
 * start appends, sealed alone when --drain flushes it) is left out: these cases edit records at
 * fixed places.
 */
async function dataFiles(dir: string): Promise<string[]> {
  const files = (await walk(path.join(dir, 'data'))).filter((f) => f.endsWith('.jsonl.gz'));
  const out: string[] = [];
  for (const f of files)
    if (
      gunzipSync(await readFile(f))
        .toString('utf8')
        .trimEnd()
        .split('\n').length > 1
    )
      out.push(f);
  return out;
}

async function digestFiles(dir: string): Promise<string[]> {
  return walk(path.join(dir, 'digests'));
}

async function verify(dir: string, extra: string[] = []) {
  const r = await runCli(['verify', '--archive', `file://${dir}`, '--verify-key', keys.verifyKey, '--json', ...extra]);
  const report = r.stdout ? (JSON.parse(r.stdout) as { ok: boolean; findings: { code: string; where: string; message: string }[] }) : null;
  return { code: r.code, stderr: r.stderr, report, codes: new Set(report?.findings.map((f) => f.code) ?? []) };
}

async function rewriteLines(file: string, edit: (lines: string[]) => string[]): Promise<void> {
  const lines = gunzipSync(await readFile(file))
    .toString('utf8')
    .trimEnd()
    .split('\n');
  await writeFile(file, gzipSync(Buffer.from(`${edit(lines).join('\n')}\n`)));
}

describe('verify', () => {
  it('passes the untouched archive, also against the head recorded in the database', async () => {
    const r = await verify(pristine, ['--database-url', urlFor(db.name, 'ship_login'), '--slot', slot()]);
    expect(r.report?.findings).toEqual([]);
    expect(r.code).toBe(0);
    const text = await runCli(['verify', '--archive', `file://${pristine}`, '--verify-key', keys.verifyKey]);
    expect(text.stdout).toMatch(/Checked \d+ files holding 554 records/); // 550 events, the PROTECT of init --example, the backfill marker, an attestation at each of the two starts
    expect(text.stdout).toMatch(/Result: intact/);
  });

  // Each case: what an attacker (or an accident) does to a copy, and the finding that must name it.
  const cases: [string, (dir: string) => Promise<void>, string[], string[]?][] = [
    [
      'a changed byte in a record',
      async (dir) => {
        await rewriteLines((await dataFiles(dir))[1]!, (l) => {
          l[3] = l[3]!.replace('"INSERT"', '"DELETE"');
          return l;
        });
      },
      ['file-altered', 'content-altered', 'record-altered'],
    ],
    [
      'a record removed',
      async (dir) => {
        await rewriteLines((await dataFiles(dir))[2]!, (l) => l.filter((_, i) => i !== 10));
      },
      ['file-altered', 'record-altered'],
    ],
    [
      'two records swapped',
      async (dir) => {
        await rewriteLines((await dataFiles(dir))[2]!, (l) => {
          [l[4], l[5]] = [l[5]!, l[4]!];
          return l;
        });
      },
      ['file-altered', 'record-altered'],
    ],
    [
      'a file removed from the middle',
      async (dir) => {
        await rm((await dataFiles(dir))[2]!);
        await rm((await digestFiles(dir))[2]!);
      },
      ['missing-digest'],
    ],
    [
      'a data file removed, its digest kept',
      async (dir) => {
        await rm((await dataFiles(dir))[3]!);
      },
      ['missing-file'],
    ],
    [
      'the newest files removed',
      async (dir) => {
        const data = await dataFiles(dir);
        const digests = await digestFiles(dir);
        for (const f of [...data.slice(-2), ...digests.slice(-2)]) await rm(f);
      },
      ['tail-missing'],
      ['--database-url', 'DB'],
    ],
    [
      'a file duplicated under another name',
      async (dir) => {
        const f = (await dataFiles(dir))[1]!;
        await copyFile(f, f.replace(/-[0-9a-f]{16}\.jsonl\.gz$/, '-0000000000000000.jsonl.gz'));
      },
      ['unreferenced-object'],
    ],
    [
      'a file re-signed with a different key',
      async (dir) => {
        const f = (await digestFiles(dir))[2]!;
        const d = JSON.parse((await readFile(f, 'utf8')).split('\n')[0]!) as Digest;
        const k = await loadSigningKey(other.signingKey);
        await writeFile(f, signDigest({ ...d, key_id: k.keyId }, k));
      },
      ['bad-digest', 'broken-digest-link'],
    ],
    [
      'a foreign file added',
      async (dir) => {
        await writeFile(path.join(dir, 'notes.txt'), 'not part of the archive');
      },
      ['foreign-object'],
    ],
    [
      'a compressed file truncated',
      async (dir) => {
        const f = (await dataFiles(dir))[1]!;
        const b = await readFile(f);
        await writeFile(f, b.subarray(0, b.length - 20));
      },
      ['file-altered', 'file-unreadable'],
    ],
    [
      'extra bytes after the compressed stream',
      async (dir) => {
        await appendFile((await dataFiles(dir))[1]!, 'appended');
      },
      ['file-altered'],
    ],
    [
      'a digest edited to match edited data, left unsigned',
      async (dir) => {
        const f = (await dataFiles(dir))[1]!;
        await rewriteLines(f, (l) => l.slice(0, -1));
        const dg = (await digestFiles(dir))[1]!;
        const [line1, line2] = (await readFile(dg, 'utf8')).split('\n');
        const d = JSON.parse(line1!) as Digest;
        const gz = await readFile(f);
        const edited = {
          ...d,
          record_count: d.record_count - 1,
          object_bytes: gz.length,
          object_sha256: (await import('node:crypto')).createHash('sha256').update(gz).digest('hex'),
        };
        await writeFile(dg, `${JSON.stringify(edited)}\n${line2}\n`);
      },
      ['bad-digest'],
    ],
  ];

  for (const [name, tamper, expected, extra] of cases) {
    it(`detects ${name}`, async () => {
      const dir = await copyArchive();
      await tamper(dir);
      const args = (extra ?? []).map((a) => (a === 'DB' ? urlFor(db.name, 'ship_login') : a));
      const r = await verify(dir, args.length ? [...args, '--slot', slot()] : []);
      expect(r.code, r.stderr).toBe(1);
      for (const code of expected) expect([...r.codes], `${name}: ${JSON.stringify(r.report?.findings)}`).toContain(code);
      expect(r.stderr.trim()).toMatch(/^pg-audit-shipper: error: \d+ problems? found in file:\/\//);
    });
  }

  it('accepts the leftover of a write interrupted by a crash, but not a fabricated file that chains correctly', async () => {
    // A shipper killed between storing file 2 and its digest seals the same records again after
    // restart, cut differently: the first copy stays behind, named by its own content hash.
    const dir = await copyArchive();
    const file2 = (await dataFiles(dir))[1]!;
    const lines = gunzipSync(await readFile(file2))
      .toString('utf8')
      .trimEnd()
      .split('\n');
    const place = async (content: string) => {
      const key = file2.replace(/-[0-9a-f]{16}\.jsonl\.gz$/, `-${createHash('sha256').update(content).digest('hex').slice(0, 16)}.jsonl.gz`);
      await writeFile(key, gzipSync(Buffer.from(content)));
      return key;
    };
    const leftover = await place(`${lines.slice(0, 40).join('\n')}\n`);
    const ok = await verify(dir);
    expect(ok.report?.findings).toEqual([]);
    expect(ok.code).toBe(0);
    expect((ok.report as unknown as { notes: { code: string; where: string }[] }).notes).toEqual([
      expect.objectContaining({ code: 'superseded-copy', where: path.relative(dir, leftover) }),
    ]);
    await rm(leftover);

    // Anyone can compute an unkeyed chain: fabricated records that chain perfectly are still not the archived ones.
    const first = openRecord(lines[0]!)!;
    const forgedBody = first.body.replace('"INSERT"', '"SELECT"');
    const prev = (JSON.parse((await readFile((await digestFiles(dir))[1]!, 'utf8')).split('\n')[0]!) as Digest).prev_chain;
    const forged = `{"chain":"${chainHash(prev as ChainHash, forgedBody)}",${forgedBody.slice(1)}\n`;
    const fake = await place(forged);
    const bad = await verify(dir);
    expect(bad.code).toBe(1);
    expect(bad.report?.findings).toEqual([expect.objectContaining({ code: 'unreferenced-object', where: path.relative(dir, fake) })]);
    await rm(fake);

    // A real record's seq and stored chain value over a made-up body: copying the chain field is not enough either.
    const copied = await place(`${lines[0]!.replace('"INSERT"', '"SELECT"')}\n`);
    const forgedCopy = await verify(dir);
    expect(forgedCopy.code).toBe(1);
    expect(forgedCopy.report?.findings).toEqual([expect.objectContaining({ code: 'unreferenced-object', where: path.relative(dir, copied) })]);
  });

  it('runs incrementally with --state: new files and a sample are read, --full reads all, a changed head resets', async () => {
    const dir = await copyArchive();
    const state = path.join(dir, '..', 'verify-state.json');
    type Json = { checked: { files: number; files_read: number }; findings: { code: string }[] };
    const run = async (extra: string[]) => {
      const r = await runCli(['verify', '--archive', `file://${dir}`, '--verify-key', keys.verifyKey, '--json', '--state', state, ...extra]);
      return { code: r.code, json: JSON.parse(r.stdout) as Json };
    };
    const first = await run([]);
    expect(first.code).toBe(0);
    expect(first.json.checked.files_read).toBe(first.json.checked.files); // no state yet: everything
    const second = await run(['--sample', '0']);
    expect(second.code).toBe(0);
    expect(second.json.checked.files_read).toBe(0); // nothing new, no sample

    // Silent damage to an old file: found by the sample that includes it, and by --full.
    await rewriteLines((await dataFiles(dir))[1]!, (l) => {
      l[2] = l[2]!.replace('"INSERT"', '"DELETE"');
      return l;
    });
    const sampledAll = await run(['--sample', '1000']);
    expect(sampledAll.code).toBe(1);
    expect(sampledAll.json.findings.map((f) => f.code)).toContain('file-altered');
    const full = await run(['--full']);
    expect(full.code).toBe(1);
    expect(full.json.checked.files_read).toBe(full.json.checked.files);

    // A head digest that differs from the one the state remembers forces a full check.
    const digests = await digestFiles(dir);
    const head = digests[digests.length - 1]!;
    await writeFile(head, (await readFile(head, 'utf8')).replace('"created_at":"', '"created_at":"X'));
    const reset = await run(['--sample', '0']);
    expect(reset.code).toBe(1);
    expect(reset.json.findings.map((f) => f.code)).toEqual(expect.arrayContaining(['trusted-state-mismatch', 'bad-digest']));
    expect(reset.json.checked.files_read).toBe(reset.json.checked.files);
  });

  it('says it could not run (exit 2) without verify keys, in one line', async () => {
    const r = await runCli(['verify', '--archive', `file://${pristine}`]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('pg-audit-shipper: error: --verify-key (AUDIT_VERIFY_KEY) is required: the public key(s) the archive is signed with');
  });

  it('worker threads and shards reach the verdict of one thread: the same JSON report, tampered or not', async () => {
    const dir = await copyArchive();
    // One altered file in the middle, one removed record later: findings in different shards.
    const files = await dataFiles(dir);
    await rewriteLines(files[1]!, (l) => {
      l[3] = l[3]!.replace('"INSERT"', '"DELETE"');
      return l;
    });
    await rewriteLines(files[3]!, (l) => l.filter((_, i) => i !== 10));
    const one = await runCli(['verify', '--archive', `file://${dir}`, '--verify-key', keys.verifyKey, '--json', '--workers', '0']);
    expect(one.code).toBe(1);
    const codes = (JSON.parse(one.stdout) as { findings: { code: string }[] }).findings.map((f) => f.code);
    expect(codes).toEqual(expect.arrayContaining(['file-altered', 'record-altered']));
    const two = await runCli(['verify', '--archive', `file://${dir}`, '--verify-key', keys.verifyKey, '--json', '--workers', '2']);
    expect(two.stdout).toBe(one.stdout);

    // The shard reports as an Indexed Job's pods would write them (file-per-block 64: a short archive is one
    // block, so the test splits by running 3 shards where 2 read nothing: the merge must still agree).
    const reports: string[] = [];
    for (let i = 0; i < 3; i++) {
      const out = path.join(dir, `..`, `shard-${path.basename(dir)}-${i}.json`);
      const r = await runCli(['verify', '--archive', `file://${dir}`, '--verify-key', keys.verifyKey, '--shard', `${i}/3`, '--shard-report', out]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(
        new RegExp(`^shard ${i}/3: files 1-\\d+ of the archive, ${i === 0 ? '1 block' : '0 blocks'} of 64 its own, \\d+ data files read`),
      );
      reports.push(out);
    }
    const merged = await runCli(['verify-merge', ...reports, '--json']);
    expect(merged.code).toBe(1);
    expect(merged.stdout).toBe(one.stdout);
    expect(merged.stderr).toMatch(/problems? found in file:\/\/.* \(3 shards\)/);

    const missing = await runCli(['verify-merge', reports[0]!, reports[2]!]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe('pg-audit-shipper: error: verify-merge: 1 of 3 shard reports missing (shards 1)');
    const notJson = await runCli(['verify-merge', path.join(dir, 'digests', (await readdir(path.join(dir, 'digests')))[0]!)]);
    expect(notJson.code).toBe(2);
  });

  it('--through ends the walk at a file, or before the first digest sealed at a time: what follows is left for the next run', async () => {
    const digests = await digestFiles(pristine);
    const third = JSON.parse((await readFile(digests[2]!, 'utf8')).split('\n')[0]!) as Digest;
    const bySeq = await verify(pristine, ['--through', '3']);
    expect(bySeq.code, JSON.stringify(bySeq.report?.findings)).toBe(0);
    const checked = (bySeq.report as unknown as { checked: { head: { file_seq: number }; cut_at: number } }).checked;
    expect(checked.head.file_seq).toBe(3);
    expect(checked.cut_at).toBe(3);
    // The same cut by time: the digest sealed right after file 3 ends it.
    const fourth = JSON.parse((await readFile(digests[3]!, 'utf8')).split('\n')[0]!) as Digest;
    expect(fourth.created_at > third.created_at).toBe(true);
    const byTime = await verify(pristine, ['--through', fourth.created_at]);
    expect(byTime.code).toBe(0);
    expect((byTime.report as unknown as { checked: { head: { file_seq: number } } }).checked.head.file_seq).toBe(3);

    // A digest whose time was edited to end the walk early does not: its signature fails, the walk goes on.
    const dir = await copyArchive();
    const ds = await digestFiles(dir);
    await writeFile(ds[1]!, (await readFile(ds[1]!, 'utf8')).replace(/"created_at":"[^"]+"/, '"created_at":"2099-01-01T00:00:00.000Z"'));
    const forged = await verify(dir, ['--through', '2098-01-01T00:00:00Z']);
    expect(forged.code).toBe(1);
    expect(forged.codes.has('bad-digest')).toBe(true);
    expect((forged.report as unknown as { checked: { head: { file_seq: number } } }).checked.head.file_seq).toBe(ds.length);

    const bad = await runCli(['verify', '--archive', `file://${pristine}`, '--verify-key', keys.verifyKey, '--through', 'yesterday']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--through \(AUDIT_VERIFY_THROUGH\) is invalid: takes a file sequence, "hour", or a time/);
  });
});
