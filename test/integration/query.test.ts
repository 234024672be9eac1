import { readFile, writeFile, readdir, chmod } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { DuckDBInstance } from '@duckdb/node-api';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';
import { makeKeys, readArchive, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';
import { APP_USERS, clinicWorkload } from '../helpers/workload.js';
import { sha256Hex } from '../../src/seal/digest.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { AUDIT_COLUMNS } from '../../src/query/format.js';

let keys: TestKeys;
let db: { name: string; url: string };
let archive: string;

/** Ground truth: audit_log ids for a WHERE clause, in id order. */
async function truth(where: string, params: unknown[] = []): Promise<string[]> {
  return withClient(db.url, async (c) =>
    (
      await c.query<{ id: string }>(
        // Receipts (source 'ingest') and attestations ('attest') are bookkeeping, checked by verify, never an answer.
        `SELECT id::text FROM audit.audit_log WHERE source NOT IN ('ingest', 'attest') AND (${where}) ORDER BY audit_log.id`,
        params,
      )
    ).rows.map((r) => r.id),
  );
}

/** `query --format json` as audit_log ids (the archive is in commit order; ids are compared as sets). */
async function answer(args: string[], archiveDir = archive): Promise<{ ids: string[]; code: number | null; stderr: string; stdout: string }> {
  const r = await runCli(['query', '--archive', `file://${archiveDir}`, '--verify-key', keys.verifyKey, '--format', 'json', ...args]);
  const ids =
    r.code === 2
      ? []
      : r.stdout
          .split('\n')
          .filter(Boolean)
          .map((l) => (JSON.parse(l) as { id: string }).id);
  return { ids: [...ids].sort((a, b) => Number(a) - Number(b)), code: r.code, stderr: r.stderr, stdout: r.stdout };
}

beforeAll(async () => {
  keys = await makeKeys();
  db = await freshDatabase('query');
  archive = await tempArchiveDir();
  const drain = async () => {
    const r = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', `s_${db.name}`, '--drain', '--batch-max-records', '60'] }), {
      DATABASE_URL: urlFor(db.name, 'ship_login'),
    });
    expect(r.code, r.stderr).toBe(0);
  };
  await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) SELECT g, 'early ' || g FROM generate_series(100001, 100020) g`));
  await drain(); // the slot exists from here: the workload is streamed, not backfilled
  await clinicWorkload(db, 300);
  await drain();
});

describe('query', () => {
  it('answers equal the database for a clinic workload spread over many files', async () => {
    const total = await truth('true');
    expect(total.length).toBeGreaterThan(800);
    const files = (await readdir(path.join(archive, 'digests'))).length;
    expect(files).toBeGreaterThan(10);
    // Most events came through the replication stream (partitioned by commit date), some from the backfill.
    const { records } = await readArchive(archive, keys.keys);
    // Backfilled: the 20 early rows and the PROTECT event of init --example.
    expect(records.filter((r) => r.op === 'insert' && r.backfill === undefined && r.source !== 'ingest' && r.source !== 'attest').length).toBe(
      total.length - 21,
    );

    // Two moments inside the workload, for time-range questions: a third and two thirds of the way
    // through its events in time. (Not by id: pgaudit's events are ingested after the workload, so
    // their ids come after every trigger event while their times interleave, and the event two
    // thirds of the way by id could be earlier than the one a third of the way.)
    const [mid, late] = await withClient(db.url, async (c) =>
      (
        await c.query<{ t: string }>(
          `SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t
             FROM (SELECT occurred_at, row_number() OVER (ORDER BY occurred_at, id) AS n, count(*) OVER () AS total FROM audit.audit_log) x
            WHERE n IN (total / 3, total * 2 / 3) ORDER BY n`,
        )
      ).rows.map((r) => r.t),
    );
    expect(mid! < late!, `${mid} before ${late}`).toBe(true);
    const cases: { args: string[]; where: string; params?: unknown[] }[] = [
      { args: [], where: 'true' },
      { args: ['--app-user', 'dr.smith'], where: `app_user_id = 'dr.smith'` },
      { args: ['--customer', '42', '--action', 'select'], where: `app_customer_id = '42' AND action = 'SELECT'` },
      { args: ['--outcome', 'failure'], where: `outcome = 'failure'` },
      {
        args: ['--db-user', 'report_login', '--from', mid!, '--to', late!],
        where: `session_user_name = 'report_login' AND occurred_at >= $1 AND occurred_at < $2`,
        params: [mid, late],
      },
      { args: ['--table', 'public.customers', '--row-id', '17'], where: `schema_name = 'public' AND table_name = 'customers' AND row_id = '17'` },
      {
        args: ['--source', 'pgaudit', '--action', 'SELECT,DELETE', '--from', mid!],
        where: `source = 'pgaudit' AND action IN ('SELECT', 'DELETE') AND occurred_at >= $1`,
        params: [mid],
      },
      {
        args: ['--app-user', APP_USERS[2]!, '--action', 'UPDATE', '--to', late!],
        where: `app_user_id = $1 AND action = 'UPDATE' AND occurred_at < $2`,
        params: [APP_USERS[2], late],
      },
    ];
    for (const c of cases) {
      const expected = await truth(c.where, c.params);
      expect(expected.length, c.where).toBeGreaterThan(0);
      if (c.where !== 'true') expect(expected.length, c.where).toBeLessThan(total.length);
      const got = await answer(c.args);
      expect(got.code, `${c.args.join(' ')}: ${got.stderr}`).toBe(0);
      expect(got.ids, c.args.join(' ')).toEqual(expected);
      expect(got.stderr).toMatch(/verified: every event shown comes from a file whose stored bytes, record chain and Ed25519-signed digest/);
      // The files' key indexes (written by the shipper's raw path) let a search for one row skip files, and never a file with a match (above).
      if (c.args.includes('--row-id')) expect(Number(/(\d+) files? not read: the key index/.exec(got.stderr)?.[1] ?? 0), got.stderr).toBeGreaterThan(files / 2);
    }
    // Non-trivial answers: each of these is a real subset.
    expect((await truth(`outcome = 'failure'`)).length).toBe(7);
    expect((await truth(`app_customer_id = '42' AND action = 'SELECT'`)).length).toBeGreaterThan(0);
  });

  it('prints a readable table with the verification summary, and JSON lines with seq and chain', async () => {
    const table = await runCli(['query', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--customer', '42']);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.split('\n');
    expect(lines[0]).toMatch(/^when \(UTC\)\s+action\s+outcome\s+db user\s+app user\s+customer\s+table\s+row\s+via\s+record$/);
    const rows = lines.filter((l) => /^\d{4}-\d{2}-\d{2} /.test(l));
    expect(rows.length).toBe((await truth(`app_customer_id = '42'`)).length);
    expect(rows.every((r) => /\s42\s+public\.customers\s/.test(r))).toBe(true);
    expect(table.stdout).toMatch(/\nanswer: {3}\d+ events — events: customer 42\n/);

    const json = await answer(['--customer', '42']);
    const first = JSON.parse(json.stdout.split('\n')[0]!) as Record<string, unknown>;
    expect(Object.keys(first)).toEqual(['seq', 'chain', ...AUDIT_COLUMNS]);
    expect(first.chain).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a time range outside the archive reads no file (test/unit/scan.test.ts covers ranges across dates)', async () => {
    const before = await answer(['--from', '2020-01-01', '--to', '2020-02-01']);
    expect(before.code).toBe(0);
    expect(before.ids).toEqual([]);
    expect(before.stderr).toMatch(/searched: commit dates 2020-01-01 to 2020-02-02; 0 digests checked link by link, 0 files read/);
    const after = await answer(['--from', '2999-01-01']);
    expect(after.stderr).toMatch(/0 digests checked link by link, 0 files read/);
  });

  it('says which file in range was tampered with and does not present its records', async () => {
    const copy = `${archive}-tampered`;
    await runCommand('cp', ['-r', archive, copy]);
    await runCommand('chmod', ['-R', 'u+w', copy]);
    // Change who did something in one file: re-compressed, so only the hashes can tell.
    const dataDir = path.join(copy, 'data', (await readdir(path.join(copy, 'data')))[0]!);
    const victim = (await readdir(dataDir)).sort()[3]!;
    const content = gunzipSync(await readFile(path.join(dataDir, victim))).toString('utf8');
    const altered = content.replace(/"app_user_id":"[^"]+"/, '"app_user_id":"someone.else"');
    expect(altered).not.toBe(content);
    await writeFile(path.join(dataDir, victim), gzipSync(altered));
    const fileSeq = Number(victim.slice(0, 12));

    const r = await answer([], copy);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`NOT VERIFIED`);
    expect(r.stderr).toContain(`the records of file ${fileSeq} are not shown`);
    expect(r.stderr).toContain(`record`);
    expect(r.stderr).toMatch(new RegExp(`${victim}: file ${fileSeq} does not match the hash its signed digest records`));
    // Everything else is still shown, verified; nothing of the altered file is.
    const all = await truth('true');
    const digest = JSON.parse((await readFile(path.join(copy, 'digests', `${victim.slice(0, 12)}.digest`), 'utf8')).split('\n')[0]!) as {
      record_count: number;
    };
    expect(r.ids.length).toBe(all.length - digest.record_count);
    expect(r.stdout).not.toContain('someone.else');
  });

  it('writes an evidence package that verifies offline, and fails when a record in it is changed or withheld', async () => {
    const dir = path.join(path.dirname(archive), 'evidence-42');
    const q = await runCli(['query', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--customer', '42', '--evidence', dir]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toContain(`evidence: ${dir}`);
    const records = (await readFile(path.join(dir, 'records.jsonl'), 'utf8')).split('\n').filter(Boolean);
    expect(records.length).toBe((await truth(`app_customer_id = '42'`)).length);
    const meta = JSON.parse(await readFile(path.join(dir, 'query.json'), 'utf8')) as { files: number[]; query: { customer: string } };
    expect(meta.query.customer).toBe('42');
    // Files in the package are the archived objects, byte for byte.
    for (const rel of (await readdir(path.join(dir, 'data'), { recursive: true })).filter((f) => String(f).endsWith('.gz'))) {
      expect(sha256Hex(await readFile(path.join(dir, 'data', String(rel))))).toBe(sha256Hex(await readFile(path.join(archive, 'data', String(rel)))));
    }

    const ok = await runCli(['verify-evidence', dir, '--verify-key', keys.verifyKey]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/result: {3}VERIFIED/);
    expect(ok.stdout).toContain('(given with --verify-key)');
    const ownKey = await runCli(['verify-evidence', dir]);
    expect(ownKey.code).toBe(0);
    expect(ownKey.stdout).toContain('confirm its key id with the archive owner');

    // An auditor's copy with one record changed, and SHA256SUMS rewritten to match: still caught.
    const changed = `${dir}-changed`;
    await runCommand('cp', ['-r', dir, changed]);
    const edited = records.map((l, i) => (i === 0 ? l.replace(/"session_user_name":"[^"]+"/, '"session_user_name":"nobody"') : l));
    await writeFile(path.join(changed, 'records.jsonl'), `${edited.join('\n')}\n`);
    await resum(changed);
    const bad = await runCli(['verify-evidence', changed, '--verify-key', keys.verifyKey]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/records\.jsonl line 1: record \d+ differs from the archived line in its file/);

    // One record left out (and records.csv, query.json and SHA256SUMS made to agree): caught.
    const withheld = `${dir}-withheld`;
    await runCommand('cp', ['-r', dir, withheld]);
    await writeFile(path.join(withheld, 'records.jsonl'), `${records.slice(1).join('\n')}\n`);
    const csv = (await readFile(path.join(withheld, 'records.csv'), 'utf8')).split('\n');
    await writeFile(path.join(withheld, 'records.csv'), [csv[0], ...csv.slice(2)].join('\n'));
    const qj = JSON.parse(await readFile(path.join(withheld, 'query.json'), 'utf8')) as { records: number };
    qj.records--;
    await writeFile(path.join(withheld, 'query.json'), JSON.stringify(qj));
    await resum(withheld);
    const gone = await runCli(['verify-evidence', withheld, '--verify-key', keys.verifyKey]);
    expect(gone.code).toBe(1);
    expect(gone.stdout).toMatch(/record \d+ answers the question and is in the package's files, but is missing from records\.jsonl/);

    // A package checked against another organisation's key fails on every signature.
    const other = await makeKeys();
    const foreign = await runCli(['verify-evidence', dir, '--verify-key', other.verifyKey]);
    expect(foreign.code).toBe(1);
    expect(foreign.stdout).toMatch(/signed with key [0-9a-f]{64}, which is not among the verify keys given/);
  });

  it('the layout is readable by DuckDB with the Athena DDL columns, and its answers equal query', async () => {
    const ddl = await readFile(path.join(PACKAGE_ROOT, 'sql', 'athena', 'audit_archive.sql'), 'utf8');
    const columns = [...ddl.matchAll(/^\s+`(\w+)`\s+(string|bigint|int)\b/gm)].map((m) => [m[1]!, m[2] as 'string' | 'bigint' | 'int'] as const);
    expect(columns.map(([c]) => c)).toEqual(expect.arrayContaining([...AUDIT_COLUMNS, 'seq', 'chain', 'op']));
    expect(ddl).toMatch(/PARTITIONED BY \(`dt` string\)/);
    const duckType = { string: 'VARCHAR', bigint: 'BIGINT', int: 'INTEGER' } as const;
    const spec = columns.map(([c, t]) => `${c}: '${duckType[t]}'`).join(', ');
    const instance = await DuckDBInstance.create(':memory:');
    const conn = await instance.connect();
    await conn.run(`CREATE VIEW audit_archive AS SELECT * FROM read_json('${archive}/data/*/*.jsonl.gz',
      format = 'newline_delimited', hive_partitioning = true, columns = {${spec}})`);
    const duck = async (where: string): Promise<string[]> => {
      const r = await conn.runAndReadAll(`SELECT id FROM audit_archive WHERE op = 'insert' AND ${where} ORDER BY seq`);
      return r
        .getRowObjectsJson()
        .map((o) => String(o.id))
        .sort((a, b) => Number(a) - Number(b));
    };
    const today = new Date().toISOString().slice(0, 10);
    const pairs: [string, string[]][] = [
      [`app_customer_id = '42' AND action = 'SELECT'`, ['--customer', '42', '--action', 'SELECT']],
      [`outcome = 'failure' AND table_name = 'customers'`, ['--outcome', 'failure', '--table', 'customers']],
      [`dt >= '${today}' AND occurred_at >= '${today}' AND app_user_id = 'dr.jones'`, ['--from', today, '--app-user', 'dr.jones']],
    ];
    for (const [where, args] of pairs) {
      const viaDuck = await duck(where);
      expect(viaDuck.length, where).toBeGreaterThan(0);
      expect(viaDuck, where).toEqual((await answer(args)).ids);
    }
    // Every archived record is there exactly once.
    const n = await conn.runAndReadAll(`SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM audit_archive WHERE op = 'insert'`);
    const [row] = n.getRowObjectsJson() as { n: number; d: number }[];
    const all = await withClient(db.url, async (c) => (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM audit.audit_log')).rows[0]!.n);
    expect(row).toEqual({ n: all, d: all }); // receipts included: the table holds every record
    conn.closeSync();
  });

  it('refuses bad input in one line', async () => {
    const base = ['query', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey];
    for (const [args, msg] of [
      [['--from', 'last tuesday'], /--from is invalid: takes a date or time/],
      [['--from', '2026-03-02', '--to', '2026-03-01'], /--from 2026-03-02T00:00:00.000000Z is not before --to/],
      [['--action', 'PEEK'], /--action PEEK is not an audited action/],
      [['--format', 'xml'], /argument 'xml' is invalid/],
    ] as [string[], RegExp][]) {
      const r = await runCli([...base, ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
    }
    const nokey = await runCli(['query', '--archive', `file://${archive}`]);
    expect(nokey.code).toBe(2);
    expect(nokey.stderr).toMatch(/--verify-key \(AUDIT_VERIFY_KEY\) is required/);
    const exists = await runCli([...base, '--evidence', archive]);
    expect(exists.code).toBe(2);
    expect(exists.stderr).toMatch(/is not empty: an evidence package is written to a new directory/);
  });
});

async function runCommand(cmd: string, args: string[]): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => execFile(cmd, args, (err) => (err ? reject(err) : resolve())));
}

/** Rewrite SHA256SUMS as someone covering their tracks would. */
async function resum(dir: string): Promise<void> {
  const lines: string[] = [];
  for (const rel of (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile())) {
    const p = path.relative(dir, path.join(rel.parentPath, rel.name));
    if (p === 'SHA256SUMS') continue;
    lines.push(`${sha256Hex(await readFile(path.join(dir, p)))}  ${p}`);
  }
  await chmod(dir, 0o755);
  await writeFile(path.join(dir, 'SHA256SUMS'), `${lines.sort().join('\n')}\n`);
}
