import { appendFile, mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { requireEnv } from '../helpers/env.js';
import { pgauditReadLine } from '../helpers/csvlog.js';
import { fakeRds, type FakeRds } from '../helpers/fake-rds.js';

/**
 * `ingest --log-source rds`: pgaudit's lines read through the RDS API's log-file actions. The API
 * is a fake (test/helpers/fake-rds.ts: no RDS instance is reachable here) serving the real
 * PostgreSQL's csvlog as RDS serves an instance's, paged, throttled and cut at 1 MB as documented;
 * the AWS SDK talks to it over HTTP (AWS_ENDPOINT_URL_RDS), retries included.
 */
let db: { name: string; url: string };
let rds: FakeRds;
/** an Aurora reader's log (the fake serves it as instance clinic-db-reader-1) */
let readerDir: string;

beforeAll(async () => {
  db = await freshDatabase('rdslogs');
  readerDir = await mkdtemp(path.join(tmpdir(), 'reader-log-'));
  rds = await fakeRds(requireEnv('TEST_PG_LOG_DIR'), 'clinic-db', { 'clinic-db-reader-1': readerDir });
});
afterAll(() => rds?.close());

const env = () => ({
  DATABASE_URL: urlFor(db.name, 'ingest_login'),
  AUDIT_CONTEXT_WAIT: '2s',
  AWS_ENDPOINT_URL_RDS: rds.url,
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
});
const tagged = () =>
  withClient(
    db.url,
    async (c) =>
      (
        await c.query<{ tag: string; n: number }>(
          `SELECT substring(statement FROM 'case:([a-z0-9-]+)') AS tag, count(*)::int AS n FROM audit.audit_log
          WHERE source = 'pgaudit' AND statement LIKE '%case:%' AND schema_name <> 'audit' /* not this query's own reads */ GROUP BY 1 ORDER BY 1`,
        )
      ).rows,
  );

describe('ingest --log-source rds', () => {
  it('ingests every read exactly once through the paged, throttled API, asking again with fewer lines where a portion reached 1 MB', async () => {
    // Three reads whose statements are 400 KB each: one portion of their lines would pass 1 MB.
    const pad = 'x'.repeat(400_000);
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '5'`);
      await c.query('SELECT full_name FROM customers WHERE id = 5 /* case:small */');
      for (const n of [1, 2, 3]) await c.query(`SELECT full_name FROM customers WHERE id = 5 /* case:big-${n} ${pad} */`);
    });
    const want = [
      { tag: 'big-1', n: 1 },
      { tag: 'big-2', n: 1 },
      { tag: 'big-3', n: 1 },
      { tag: 'small', n: 1 },
    ];
    for (let i = 0; i < 40 && JSON.stringify(await tagged()) !== JSON.stringify(want); i++) {
      const r = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db'], env());
      expect(r.code, r.stderr).toBe(0);
      await sleep(150);
    }
    expect(await tagged()).toEqual(want);
    // The listing came in pages, requests were throttled and retried, and a portion that reached
    // 1 MB was asked again, from the same marker, with half the lines.
    expect(rds.throttled).toBeGreaterThan(0);
    const cut = rds.portions.filter((p) => p.bytes === 1024 * 1024);
    expect(cut.length).toBeGreaterThan(0);
    for (const c of cut) expect(rds.portions.some((p) => p.file === c.file && p.marker === c.marker && p.lines < c.lines && p.bytes < 1024 * 1024)).toBe(true);

    // Once more: nothing read twice (the positions saved are the API's bytes, one portion after another).
    const again = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db'], env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/, 0 already present\)/);
    expect(await tagged()).toEqual(want);
  });

  it("Aurora: the writer's and a reader's logs together (reads made on a reader are only in its log); each instance's newest file is still being written", async () => {
    // The reader's log, in the csvlog PostgreSQL writes: a read, then a record still being written.
    const line = (n: number, tag: string) =>
      pgauditReadLine({
        database: db.name,
        n,
        statement: `SELECT full_name FROM customers WHERE id = 5 /* case:${tag} */`,
        pid: 5151,
        session: '6b0d5151.141f',
        from: '10.0.2.7:40112',
        application: 'reporting',
      });
    const second = line(2, 'reader-2');
    const file = path.join(readerDir, 'postgresql.log.2026-12-07-10.csv');
    await writeFile(file, line(1, 'reader-1') + second.slice(0, 100));
    // Older than the writer's newest file: with the two logs in one list it is not the newest file,
    // yet it is its own server's newest, so its open record waits rather than counting as torn.
    await utimes(file, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    const both = ['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db, clinic-db-reader-1', '--context-wait', '1ms'];
    const first = await runCli(both, env());
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).not.toMatch(/cut short/);
    const readerRows = () =>
      withClient(
        db.url,
        async (c) =>
          (
            await c.query<{ tag: string; client_addr: string; application_name: string }>(
              `SELECT substring(statement FROM 'case:(reader-[0-9])') AS tag, host(client_addr) AS client_addr, application_name FROM audit.audit_log
                WHERE source = 'pgaudit' AND statement LIKE '%case:reader-%' AND schema_name <> 'audit' ORDER BY id`,
            )
          ).rows,
      );
    expect(await readerRows()).toEqual([{ tag: 'reader-1', client_addr: '10.0.2.7', application_name: 'reporting' }]);
    const torn = await withClient(
      db.url,
      async (c) =>
        (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE action = 'UNREADABLE LOG RECORD' AND statement LIKE 'clinic-db-reader-1/%'`))
          .rows[0].n,
    );
    expect(torn).toBe(0);
    // The record completes; the next pass reads it, and nothing of either instance twice.
    await appendFile(file, second.slice(100));
    await utimes(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const next = await runCli(both, env());
    expect(next.code, next.stderr).toBe(0);
    expect(next.stdout).toMatch(/, 0 already present\)/);
    expect((await readerRows()).map((r) => r.tag)).toEqual(['reader-1', 'reader-2']);
    // The writer's files kept the names and positions the single-instance runs above saved.
    const keys = await withClient(db.url, async (c) =>
      (await c.query<{ file_key: string }>(`SELECT file_key FROM audit.ingest_files ORDER BY 1`)).rows.map((r) => r.file_key),
    );
    expect(keys.some((k) => k.startsWith('rds:clinic-db-reader-1/error/postgresql.log.2026-12-07-10.csv:'))).toBe(true);
    expect(keys.filter((k) => k.startsWith('rds:error/')).length).toBeGreaterThan(0);
    expect(keys.every((k) => !k.startsWith('rds:clinic-db/'))).toBe(true);
  });

  it('says what is wrong in one line: a missing instance name, jsonlog, an instance the API does not know', async () => {
    const noId = await runCli(['ingest', '--log-source', 'rds'], env());
    expect(noId.code).toBe(2);
    expect(noId.stderr).toMatch(/--log-source rds needs --rds-instance \(AUDIT_RDS_INSTANCE\)/);
    const json = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db', '--log-format', 'jsonlog'], env());
    expect(json.stderr).toMatch(/--log-source rds reads csvlog \(RDS writes no jsonlog\)/);
    const badList = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db,,r1'], env());
    expect(badList.code).toBe(2);
    expect(badList.stderr).toMatch(/--rds-instance \(AUDIT_RDS_INSTANCE\) "" is not a DB instance identifier/);
    const unknown = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'no-such-db'], env());
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--log-source rds: listing the log files of DB instance no-such-db failed: DBInstanceNotFound/);
  });
});
