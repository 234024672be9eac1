import { appendFile, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
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
    // (A single line over 1 MB, which another test's database may write meanwhile, is cut with no fewer lines to ask.)
    const cut = rds.portions.filter((p) => p.bytes === 1024 * 1024 && p.lines > 1);
    expect(cut.length).toBeGreaterThan(0);
    for (const c of cut) expect(rds.portions.some((p) => p.file === c.file && p.marker === c.marker && p.lines < c.lines && p.bytes < 1024 * 1024)).toBe(true);

    // Once more: nothing read twice (the positions saved are the API's bytes, one portion after another).
    const again = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db'], env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/, 0 already present\)/);
    expect(await tagged()).toEqual(want);
  });

  it("a read padded past the API's 1 MB arrives cut: recorded as unreadable with who made it, and the lines after it are read", async () => {
    // A hostile application pads a read so its log line is longer than one portion: RDS returns the
    // first MB and goes on at the next line. Read on as if the line would end, its open quote would
    // swallow every later line of the file.
    const pad = 'y'.repeat(1_200_000);
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '5'`);
      await c.query(`SELECT full_name FROM customers WHERE id = 5 /* case:padded ${pad} */`);
      await c.query('SELECT full_name FROM customers WHERE id = 5 /* case:after-padded */');
    });
    const cutEvents = () =>
      withClient(
        db.url,
        async (c) =>
          (
            await c.query<{ session_user_name: string; statement: string; error: string; keyed: boolean }>(
              `SELECT session_user_name, statement, error, log_session_id IS NOT NULL AND log_line_num IS NOT NULL AS keyed FROM audit.audit_log
                WHERE action = 'UNREADABLE LOG RECORD' AND statement LIKE '%case:padded%'`,
            )
          ).rows,
      );
    for (let i = 0; i < 40 && !(await tagged()).some((t) => t.tag === 'after-padded'); i++) {
      const r = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db'], env());
      expect(r.code, r.stderr).toBe(0);
      await sleep(150);
    }
    expect((await tagged()).filter((t) => t.tag === 'after-padded' || t.tag === 'padded')).toEqual([{ tag: 'after-padded', n: 1 }]);
    const [event, ...more] = await cutEvents();
    expect(more).toEqual([]);
    expect(event).toMatchObject({ session_user_name: 'app_login', keyed: true });
    expect(event!.statement).toMatch(
      /^error\/postgresql.*\.csv bytes \d+-\d+, a record whose message began: AUDIT: OBJECT,\d+,\d+,READ,SELECT,TABLE,public\.customers,/,
    );
    expect(event!.error).toMatch(/cut this record short .*1 MB/);
    // Once more: nothing twice, and no lines taken for missing.
    const again = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db'], env());
    expect(again.code, again.stderr).toBe(0);
    expect(await cutEvents()).toHaveLength(1);
    const missing = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE action = 'LOG LINES MISSING'`)).rows[0].n,
    );
    expect(missing).toBe(0);
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

  it('a rotated file with a cut line is read to its end once, then not downloaded again; its torn last line shows as missing', async () => {
    // Written as the reader's csvlog: line 1 a read, line 2 a read over 1 MB (cut by the API, and the
    // last line it serves: no next line shows the cut, the file's rotation does), line 3 torn by a
    // crash; then a newer file, so this one is rotated and line 3 never completes.
    const line = (n: number, statement: string) =>
      pgauditReadLine({ database: db.name, n, statement, pid: 6161, session: '6b0d6161.181f', from: '10.0.2.8:40200', application: 'batch' });
    const older = 'postgresql.log.2026-12-07-11.csv';
    const third = line(3, 'SELECT full_name FROM customers WHERE id = 5 /* case:rotated-3 */');
    await writeFile(
      path.join(readerDir, older),
      line(1, 'SELECT full_name FROM customers WHERE id = 5 /* case:rotated-1 */') +
        line(2, `SELECT full_name FROM customers WHERE id = 5 /* case:rotated-2 ${'z'.repeat(1_100_000)} */`) +
        third.slice(0, 120),
    );
    await utimes(path.join(readerDir, older), new Date(Date.now() - 50_000), new Date(Date.now() - 50_000));
    await writeFile(path.join(readerDir, 'postgresql.log.2026-12-07-12.csv'), line(4, 'SELECT full_name FROM customers WHERE id = 5 /* case:rotated-4 */'));
    const both = ['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db,clinic-db-reader-1', '--context-wait', '1ms'];
    const first = await runCli(both, env());
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/the log source cut the last log record of a rotated file short/);
    // The torn line has no newline: the API serves lines, so it never arrives; the next line of its
    // session shows the gap.
    expect(first.stderr).toMatch(/"missing_lines":1/);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ action: string; tag: string | null; session_user_name: string; client_addr: string | null }>(
            `SELECT action, substring(statement FROM 'case:(rotated-[0-9])') AS tag, session_user_name, host(client_addr) AS client_addr FROM audit.audit_log
              WHERE statement LIKE '%case:rotated-%' OR statement LIKE '%6b0d6161.181f%' ORDER BY action, tag`,
          )
        ).rows,
    );
    expect(rows).toEqual([
      { action: 'LOG LINES MISSING', tag: null, session_user_name: 'app_login', client_addr: null },
      { action: 'SELECT', tag: 'rotated-1', session_user_name: 'app_login', client_addr: '10.0.2.8' },
      { action: 'SELECT', tag: 'rotated-4', session_user_name: 'app_login', client_addr: '10.0.2.8' },
      { action: 'UNREADABLE LOG RECORD', tag: 'rotated-2', session_user_name: 'app_login', client_addr: '10.0.2.8' },
    ]);
    // Read to its end: marked so (its listed size, negated), and not asked for again.
    const seen = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT seen_size::int AS s FROM audit.ingest_files WHERE file_name = $1`, [`clinic-db-reader-1/error/${older}`])).rows[0].s,
    );
    expect(seen).toBeLessThan(0);
    const asked = rds.portions.length;
    expect(rds.portions.filter((p) => p.file === older && p.marker !== '0').length).toBeGreaterThan(0);
    const again = await runCli(both, env());
    expect(again.code, again.stderr).toBe(0);
    // Only its first bytes, for its identity (from the start, marker 0), not the rest of it.
    expect(rds.portions.slice(asked).filter((p) => p.file === older && p.marker !== '0')).toEqual([]);
    const missing = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE action = 'LOG LINES MISSING'`)).rows[0].n,
    );
    expect(missing).toBe(1); // line 3, once
  });

  it('a file whose portions end before its listed size: the rest is not taken for read, and when RDS removes the file its unread bytes are recorded as missing', async () => {
    const line = (n: number, tag: string, session: string) =>
      pgauditReadLine({
        database: db.name,
        n,
        statement: `SELECT full_name FROM customers WHERE id = 5 /* case:${tag} */`,
        pid: 7171,
        session,
        from: '10.0.2.9:40300',
        application: 'batch',
      });
    const early = 'postgresql.log.2026-12-07-13.csv';
    const first = line(1, 'early-1', '6b0d7171.1c03');
    await writeFile(path.join(readerDir, early), first + line(2, 'early-2', '6b0d7171.1c03') + line(3, 'early-3', '6b0d7171.1c03'));
    await utimes(path.join(readerDir, early), new Date(Date.now() - 10_000), new Date(Date.now() - 10_000));
    // A newer file (another session, so no line-number gap tells), so this one is rotated.
    await writeFile(path.join(readerDir, 'postgresql.log.2026-12-07-14.csv'), line(1, 'early-4', '6b0d7272.1c04'));
    rds.servedUpTo.set(early, Buffer.byteLength(first));
    // The reader's log alone (as a single instance's: bare names), not the suite's whole log as well.
    const reader = ['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db-reader-1', '--context-wait', '1ms'];
    const earlyTags = async () => (await tagged()).filter((t) => t.tag.startsWith('early-'));
    const missing = () =>
      withClient(
        db.url,
        async (c) =>
          (
            await c.query<{ statement: string }>(`SELECT statement FROM audit.audit_log WHERE action = 'LOG LINES MISSING' AND statement LIKE $1`, [
              `%${early}%`,
            ])
          ).rows,
      );
    for (let i = 0; i < 2; i++) {
      const r = await runCli(reader, env());
      expect(r.code, r.stderr).toBe(0);
      // Said at once (each run is a process of its own), not only when the file is removed.
      expect(r.stderr).toMatch(
        new RegExp(
          `"file":"error/${early.replace(/\./g, '\\.')}","read_to":${Buffer.byteLength(first)},"size":\\d+,"msg":"a rotated log file ends, as its source serves it, before its listed size`,
        ),
      );
    }
    expect(await earlyTags()).toEqual([
      { tag: 'early-1', n: 1 },
      { tag: 'early-4', n: 1 },
    ]);
    expect(await missing()).toEqual([]);
    // RDS's retention removes the file.
    await rm(path.join(readerDir, early));
    const after = await runCli(reader, env());
    expect(after.code, after.stderr).toBe(0);
    const size = Buffer.byteLength(first + line(2, 'early-2', '6b0d7171.1c03') + line(3, 'early-3', '6b0d7171.1c03'));
    expect((await missing()).map((m) => m.statement)).toEqual([
      `log file error/${early}: bytes ${Buffer.byteLength(first)}-${size} (${size - Buffer.byteLength(first)}) were never read`,
    ]);
    expect(await earlyTags()).toHaveLength(2);
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
