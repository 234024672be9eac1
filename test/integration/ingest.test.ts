import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { requireEnv } from '../helpers/env.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { makeKeys, shipArgs, tempArchiveDir } from '../helpers/archive.js';
import { pgauditReadLine } from '../helpers/csvlog.js';

let db: { name: string; url: string };
let logDir: string;

beforeAll(async () => {
  db = await freshDatabase('ingest');
  logDir = requireEnv('TEST_PG_LOG_DIR');
  await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) SELECT g, 'name ' || g FROM generate_series(1, 50) g`));
});

/** This suite reads audit_log to check it (as do verify and the shipper), and those reads are events too: reads of the trail are audited. */
const NOT_OUR_READS = "NOT (schema_name = 'audit' AND action = 'SELECT')";

/**
 * A read that returns no row (the example's row-level security hides every row from a session
 * without app.customer_id) never gets the server's context line: it is written as unknown after the
 * wait, shortened here so the tests need not wait a minute.
 */
const ingestEnv = () => ({ DATABASE_URL: urlFor(db.name, 'ingest_login'), PGAUDIT_LOG_DIR: logDir, AUDIT_CONTEXT_WAIT: '2s' });

/** The logging collector writes asynchronously: ingest until `count` pgaudit rows match or time runs out. */
async function ingestUntil(where: string, count: number): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = await runCli(['ingest'], ingestEnv());
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/, 0 already present\)/);
    const n = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND ${where}`)).rows[0].n,
    );
    if (n >= count) return;
    await sleep(100);
  }
}

describe('ingest', () => {
  it('turns reads into success events attributed to app.user_id / app.customer_id, and denials into failures', async () => {
    await withClient(urlFor(db.name, 'app_login', { application_name: 'portal' }), async (c) => {
      await c.query(`SET app.user_id = 'dr.who'`);
      await c.query(`SET app.customer_id = '5'`);
      await c.query('SELECT full_name FROM customers WHERE id = 5');
      await c.query('BEGIN');
      await c.query(`SET LOCAL app.user_id = 'nurse.joy'`);
      await c.query('SELECT count(*) FROM customers');
      await c.query('COMMIT');
      await c.query(`SELECT 1 FROM customers WHERE id = 5 /* after the transaction */`);
    });
    await withClient(urlFor(db.name, 'ship_login'), async (c) => {
      await expect(c.query('SELECT * FROM customers')).rejects.toThrow(/permission denied/);
    });
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await expect(c.query('DELETE FROM audit.audit_log')).rejects.toThrow(/permission denied/);
    });
    await ingestUntil('true', 5);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT action, outcome, schema_name, table_name, session_user_name, app_user_id, app_customer_id, application_name,
              statement, error FROM audit.audit_log WHERE source = 'pgaudit' AND ${NOT_OUR_READS} ORDER BY occurred_at, log_line_num`,
          )
        ).rows,
    );
    expect(rows).toEqual([
      {
        action: 'SELECT',
        outcome: 'success',
        schema_name: 'public',
        table_name: 'customers',
        session_user_name: 'app_login',
        app_user_id: 'dr.who',
        app_customer_id: '5',
        application_name: 'portal',
        statement: 'SELECT full_name FROM customers WHERE id = 5',
        error: null,
      },
      {
        action: 'SELECT',
        outcome: 'success',
        schema_name: 'public',
        table_name: 'customers',
        session_user_name: 'app_login',
        app_user_id: 'nurse.joy',
        app_customer_id: '5',
        application_name: 'portal',
        statement: 'SELECT count(*) FROM customers',
        error: null,
      },
      {
        action: 'SELECT',
        outcome: 'success',
        schema_name: 'public',
        table_name: 'customers',
        session_user_name: 'app_login',
        app_user_id: 'dr.who',
        app_customer_id: '5',
        application_name: 'portal',
        statement: 'SELECT 1 FROM customers WHERE id = 5 /* after the transaction */',
        error: null,
      },
      {
        action: 'SELECT',
        outcome: 'failure',
        schema_name: 'public',
        table_name: 'customers',
        session_user_name: 'ship_login',
        app_user_id: null,
        app_customer_id: null,
        application_name: null,
        statement: 'SELECT * FROM customers',
        error: '42501: permission denied for table customers',
      },
      {
        action: 'DELETE',
        outcome: 'failure',
        schema_name: 'audit',
        table_name: 'audit_log',
        session_user_name: 'app_login',
        app_user_id: null,
        app_customer_id: null,
        application_name: null,
        statement: 'DELETE FROM audit.audit_log',
        error: '42501: permission denied for schema audit',
      },
    ]);
    // Nothing more on a second pass but this test's own reads of the trail: the position was saved with the rows.
    const again = await runCli(['ingest'], ingestEnv());
    expect(again.stdout).toMatch(/^ingested \d+ events .*, 0 already present\)/);
    const after = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'pgaudit' AND ${NOT_OUR_READS}`)).rows[0].n,
    );
    expect(after).toBe(rows.length);
  });

  it('is exactly-once across kill -9 and restart', async () => {
    const reads = 1500;
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '3'`);
      for (let i = 0; i < reads; i++) await c.query(`SELECT full_name FROM customers WHERE id = 3 AND ${i} >= 0`);
    });
    await sleep(300); // let the logging collector write the last lines
    const count = () =>
      withClient(
        db.url,
        async (c) =>
          (
            await c.query(
              `SELECT count(*)::int AS n, count(DISTINCT (log_session_id, log_line_num))::int AS d FROM audit.audit_log
        WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND statement LIKE 'SELECT full_name FROM customers WHERE id = 3 AND %'`,
            )
          ).rows[0],
      );
    let kills = 0;
    for (let attempt = 0; attempt < 30 && (await count()).n < reads; attempt++) {
      // Small chunks: hundreds of transactions, so the kill lands between and inside them.
      const child = startCli(['ingest', '--chunk-bytes', '2048'], ingestEnv());
      const done = waitFor(child);
      await sleep(150 + Math.floor(Math.random() * 250));
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        kills++;
      }
      await done;
    }
    expect(kills).toBeGreaterThan(0);
    await ingestUntil(`statement LIKE 'SELECT full_name FROM customers WHERE id = 3 AND %'`, reads);
    const final = await count();
    expect(final).toEqual({ n: reads, d: reads });
  });

  it('a forged AUDIT line raised by the application is recorded as a forgery, never as a read or a change of attribution', async () => {
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '8'`);
      // A fake read of patient 4711, and a fake SET that would hide whose record the next real read touches.
      await c.query(
        `DO $$ BEGIN RAISE LOG 'AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,"SELECT * FROM customers WHERE id = 4711 /* forged */",<not logged>'; END $$`,
      );
      await c.query(`DO $$ BEGIN RAISE LOG 'AUDIT: SESSION,1,1,MISC,SET,,,SET app.customer_id = ''99'',<not logged>'; END $$`);
      await c.query(`SELECT full_name FROM customers WHERE id = 8 /* real read after the forgery */`);
    });
    await ingestUntil(`statement LIKE '%real read after the forgery%'`, 1);
    await ingestUntil(`action = 'FORGED AUDIT LINE'`, 2);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT action, outcome, table_name, session_user_name, app_customer_id, left(statement, 40) AS statement, error FROM audit.audit_log
        WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND (action = 'FORGED AUDIT LINE' OR statement LIKE '%forge%') ORDER BY log_line_num`,
          )
        ).rows,
    );
    // The forgeries' own attribution is unknown (the server recorded none for a RAISE); the real read's is what the server said.
    expect(rows).toEqual([
      {
        action: 'FORGED AUDIT LINE',
        outcome: 'failure',
        table_name: null,
        session_user_name: 'app_login',
        app_customer_id: null,
        statement: 'AUDIT: OBJECT,1,1,READ,SELECT,TABLE,publ',
        error: "a LOG line that claims to be pgaudit's, written from: PL/pgSQL function inline_code_block line 1 at RAISE",
      },
      {
        action: 'FORGED AUDIT LINE',
        outcome: 'failure',
        table_name: null,
        session_user_name: 'app_login',
        app_customer_id: null,
        statement: 'AUDIT: SESSION,1,1,MISC,SET,,,SET app.cu',
        error: "a LOG line that claims to be pgaudit's, written from: PL/pgSQL function inline_code_block line 1 at RAISE",
      },
      {
        action: 'SELECT',
        outcome: 'success',
        table_name: 'customers',
        session_user_name: 'app_login',
        app_customer_id: '8',
        statement: 'SELECT full_name FROM customers WHERE id',
        error: null,
      },
    ]);
  });

  it('records reads of protected tables whose names need quoting (clinic."PatientNotes", clinic."user")', async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE SCHEMA IF NOT EXISTS clinic');
      await c.query('CREATE TABLE clinic."PatientNotes" (id int PRIMARY KEY, note text)');
      await c.query('CREATE TABLE clinic."user" (id int PRIMARY KEY)');
      await c.query('GRANT USAGE ON SCHEMA clinic TO phi_app');
      await c.query('GRANT SELECT ON clinic."PatientNotes", clinic."user" TO phi_app');
    });
    for (const t of ['clinic."PatientNotes"', 'clinic."user"']) {
      const r = await runCli(['protect', t], { DATABASE_URL: db.url });
      expect(r.code, r.stderr).toBe(0);
    }
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query('SELECT note FROM clinic."PatientNotes" WHERE id = 1');
      await c.query('SELECT id FROM clinic."user"');
    });
    await ingestUntil(`schema_name = 'clinic'`, 2);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT table_name, statement FROM audit.audit_log WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND schema_name = 'clinic' ORDER BY log_line_num`,
          )
        ).rows,
    );
    expect(rows).toEqual([
      { table_name: 'PatientNotes', statement: 'SELECT note FROM clinic."PatientNotes" WHERE id = 1' },
      { table_name: 'user', statement: 'SELECT id FROM clinic."user"' },
    ]);
  });

  it('reads through writes: UPDATE/DELETE ... RETURNING and MERGE rolled back, a write matching nothing, a write failing on a value: each leaves an event', async () => {
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '7'`);
      await c.query('BEGIN');
      expect((await c.query(`UPDATE customers SET full_name = full_name WHERE id = 7 RETURNING full_name /* rw1 */`)).rows).toHaveLength(1);
      await c.query('ROLLBACK');
      await c.query('BEGIN');
      await c.query('SAVEPOINT s');
      await c.query(`DELETE FROM customers WHERE id = 7 RETURNING * /* rw2 */`);
      await c.query('ROLLBACK TO SAVEPOINT s');
      await c.query('COMMIT');
      await c.query('BEGIN');
      await c.query(`MERGE INTO customers c USING (SELECT 7 AS id) s ON c.id = s.id WHEN MATCHED THEN UPDATE SET full_name = c.full_name /* rw3 */`);
      await c.query('ROLLBACK');
      await c.query(`DELETE FROM customers WHERE id = 7 AND full_name LIKE 'Z%' /* rw4: an oracle that matches nothing */`);
      await expect(c.query(`UPDATE customers SET id = full_name::int WHERE id = 7 /* rw5 */`)).rejects.toThrow(/invalid input syntax/);
    });
    await ingestUntil(`statement LIKE '%/* rw5 */%' AND outcome = 'failure'`, 1);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT action, outcome, app_customer_id, app_context, substring(statement FROM '/\\* (rw\\d)') AS tag, error FROM audit.audit_log
        WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND statement ~ '/\\* rw\\d' ORDER BY log_line_num`,
          )
        ).rows,
    );
    // Each statement that reached a row carries the context the server recorded in it; the ERROR
    // line (the server records no context in it) says unknown.
    expect(rows).toEqual([
      { action: 'UPDATE', outcome: 'success', app_customer_id: '7', app_context: null, tag: 'rw1', error: null },
      { action: 'DELETE', outcome: 'success', app_customer_id: '7', app_context: null, tag: 'rw2', error: null },
      { action: 'UPDATE', outcome: 'success', app_customer_id: '7', app_context: null, tag: 'rw3', error: null },
      // the policy is checked on row 7 before LIKE 'Z%' rejects it: the oracle is attributed too
      { action: 'DELETE', outcome: 'success', app_customer_id: '7', app_context: null, tag: 'rw4', error: null },
      { action: 'UPDATE', outcome: 'success', app_customer_id: '7', app_context: null, tag: 'rw5', error: null },
      {
        action: 'UPDATE',
        outcome: 'failure',
        app_customer_id: null,
        app_context: 'unknown',
        tag: 'rw5',
        error: "22P02: the statement failed (the server's message is not kept: it may quote values)",
      },
    ]);
    // The value the failing statement echoed is not in the trail.
    const leaked = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE error LIKE '%name 7%'`)).rows[0].n,
    );
    expect(leaked).toBe(0);
  });

  it('receipts prove coverage: an offset moved past unread lines is a finding in verify; a log file seen again under a new inode duplicates nothing', async () => {
    const archive = await tempArchiveDir();
    const keys = await makeKeys();
    const slot = `s_${db.name}_receipts`;
    const ship = async () => {
      const r = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--drain', '--slot', slot] }), {
        DATABASE_URL: urlFor(db.name, 'ship_login'),
      });
      expect(r.code, r.stderr).toBe(0);
    };
    const verify = async () => {
      const r = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
      return { code: r.code, report: JSON.parse(r.stdout) as { findings: { code: string; message: string }[] } };
    };
    await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT full_name FROM customers WHERE id = 9 /* receipts 1 */`));
    await ingestUntil(`statement LIKE '%receipts 1%'`, 1);
    await ship();
    const clean = await verify();
    expect(clean.code, JSON.stringify(clean.report.findings)).toBe(0);
    const receipts = await withClient(db.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'ingest'`)).rows[0].n);
    expect(receipts).toBeGreaterThan(0);

    // The same file under a new name and inode: read again from byte 0, nothing inserted twice.
    const { copyFile, readdir, stat } = await import('node:fs/promises');
    const files = (await readdir(logDir)).filter((f) => f.endsWith('.csv'));
    const newest = (await Promise.all(files.map(async (f) => ({ f, m: (await stat(`${logDir}/${f}`)).mtimeMs })))).sort((a, b) => b.m - a.m)[0]!.f;
    // (A read held for its context line may be written by this pass: count lines written twice, not rows.)
    const twice = () =>
      withClient(
        db.url,
        async (c) =>
          (await c.query(`SELECT count(*)::int - count(DISTINCT (log_session_id, log_line_num))::int AS n FROM audit.audit_log WHERE source = 'pgaudit'`))
            .rows[0].n,
      );
    await copyFile(`${logDir}/${newest}`, `${logDir}/copy-of-${newest}`);
    try {
      const again = await runCli(['ingest'], ingestEnv());
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/[1-9]\d* already present/);
      expect(await twice()).toBe(0);
    } finally {
      const { rm } = await import('node:fs/promises');
      await rm(`${logDir}/copy-of-${newest}`, { force: true });
    }

    // The ingester's own role moves its position forward past lines it has not read.
    await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT full_name FROM customers WHERE id = 9 /* receipts 2: skipped */`));
    await sleep(300);
    await withClient(urlFor(db.name, 'ingest_login'), (c) =>
      c.query(`UPDATE audit.ingest_files SET byte_offset = byte_offset + 50 WHERE file_name = $1`, [newest]),
    );
    await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT full_name FROM customers WHERE id = 9 /* receipts 3 */`));
    // The moved position lands inside the line of "receipts 2": ingest says so, records the bytes it
    // skips to the next record as unreadable, and goes on with "receipts 3".
    let said = '';
    for (let i = 0; i < 50; i++) {
      const r = await runCli(['ingest'], ingestEnv());
      expect(r.code).toBe(0);
      said += r.stderr;
      const n = await withClient(
        db.url,
        async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE statement LIKE '%receipts 3%' AND ${NOT_OUR_READS}`)).rows[0].n,
      );
      if (n > 0) break;
      await sleep(100);
    }
    expect(said).toMatch(/the saved position is inside a log record; resuming at the next record/);
    const unreadable = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT action, outcome, statement FROM audit.audit_log WHERE action = 'UNREADABLE LOG RECORD'`)).rows,
    );
    expect(unreadable).toEqual([
      { action: 'UNREADABLE LOG RECORD', outcome: 'failure', statement: expect.stringMatching(new RegExp(`^${newest.replace('.', '\\.')} bytes \\d+-\\d+$`)) },
    ]);
    expect(
      await withClient(
        db.url,
        async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE statement LIKE '%receipts 3%' AND ${NOT_OUR_READS}`)).rows[0].n,
      ),
    ).toBe(1);
    await ship();
    const found = await verify();
    expect(found.code).toBe(1);
    expect(found.report.findings.map((f) => f.code)).toContain('ingest-skipped');
    expect(found.report.findings.find((f) => f.code === 'ingest-skipped')!.message).toMatch(new RegExp(`were never ingested`));
  });

  it('a huge statement (a literal of 5 million quotes: a 20 MB log record) is one event with its statement cut, and ingestion goes on after it', async () => {
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SELECT full_name FROM customers WHERE id = 4 AND '${'"'.repeat(5_000_000)}' <> '' /* huge */`);
      await c.query(`SELECT full_name FROM customers WHERE id = 4 /* after the huge one */`);
    });
    await ingestUntil(`statement LIKE '%after the huge one%'`, 1);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT length(statement) AS len, left(statement, 60) AS head FROM audit.audit_log
        WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND (statement LIKE 'SELECT full_name FROM customers WHERE id = 4 AND%' OR statement LIKE '%after the huge one%') ORDER BY log_line_num`,
          )
        ).rows,
    );
    expect(rows).toEqual([
      { len: 2000, head: `SELECT full_name FROM customers WHERE id = 4 AND '${'"'.repeat(10)}` },
      { len: 69, head: 'SELECT full_name FROM customers WHERE id = 4 /* after the hu' },
    ]);
  });

  it('a record torn at the end of a log file the server rotated away from becomes an unreadable-record event; the lines before it and the next file are read', async () => {
    const { mkdtemp, writeFile, utimes } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(`${tmpdir()}/torn-`);
    const line = (n: number, statement: string) => pgauditReadLine({ database: db.name, n, statement, pid: 4242, session: '6b0b7777.1' });
    const before = line(1, 'SELECT 1 FROM customers /* torn-before */');
    const torn = line(2, 'SELECT 2 FROM customers /* torn-cut */').slice(0, 120); // the crash cut it here
    await writeFile(`${dir}/postgresql-a.csv`, before + torn);
    await writeFile(`${dir}/postgresql-b.csv`, line(3, 'SELECT 3 FROM customers /* torn-next-file */'));
    await utimes(`${dir}/postgresql-a.csv`, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    // These made-up reads have no context lines: written as unknown at the end of this one pass.
    const r = await runCli(['ingest', '--log-dir', dir, '--context-wait', '1ms'], { DATABASE_URL: urlFor(db.name, 'ingest_login') });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/a log record was cut short/);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT action, statement, error FROM audit.audit_log WHERE statement LIKE '%torn-%' OR (action = 'UNREADABLE LOG RECORD' AND statement LIKE 'postgresql-a.csv%') ORDER BY id`,
          )
        ).rows,
    );
    // (the reads are written at the end of the pass, after the unreadable record: compared in file order)
    const order = (r: { statement: string }) => ['torn-before', 'postgresql-a.csv', 'torn-next-file'].findIndex((k) => r.statement.includes(k));
    rows.sort((a, b) => order(a) - order(b));
    expect(rows).toEqual([
      { action: 'SELECT', statement: 'SELECT 1 FROM customers /* torn-before */', error: null },
      {
        action: 'UNREADABLE LOG RECORD',
        statement: `postgresql-a.csv bytes ${before.length}-${before.length + torn.length}`,
        error: 'the record was cut short and never completed',
      },
      { action: 'SELECT', statement: 'SELECT 3 FROM customers /* torn-next-file */', error: null },
    ]);
  });

  it('a log file removed before ingest read all it held (the log retention ran first) is recorded as lines missing, once', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(`${tmpdir()}/removed-`);
    const line = (n: number, statement: string) => pgauditReadLine({ database: db.name, n, statement, pid: 4343, session: '6b0b8888.1' });
    const read = line(1, 'SELECT 1 FROM customers /* removed-read */');
    // The server is still writing the next record when the pass runs: it is left for the next pass.
    const unread = line(2, 'SELECT 2 FROM customers /* removed-unread */').slice(0, 150);
    await writeFile(`${dir}/postgresql-c.csv`, read + unread);
    const ingest = () => runCli(['ingest', '--log-dir', dir, '--context-wait', '1ms'], { DATABASE_URL: urlFor(db.name, 'ingest_login') });
    expect((await ingest()).code).toBe(0);
    // Then the file is gone (retention removed it) and the server writes another.
    await rm(`${dir}/postgresql-c.csv`);
    await writeFile(`${dir}/postgresql-d.csv`, line(3, 'SELECT 3 FROM customers /* removed-next */'));
    const second = await ingest();
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/a log file was removed before ingest read it/);
    expect((await ingest()).code).toBe(0); // said once
    const missing = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ statement: string; error: string }>(
            `SELECT statement, error FROM audit.audit_log WHERE action = 'LOG LINES MISSING' AND statement LIKE 'log file postgresql-c.csv%'`,
          )
        ).rows,
    );
    expect(missing).toEqual([
      {
        statement: `log file postgresql-c.csv: bytes ${read.length}-${read.length + unread.length} (${unread.length}) were never read`,
        error: "the log file was removed (the server's or the platform's log retention) before ingest read it: any audit event in those bytes is lost",
      },
    ]);
    const reads = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ s: string }>(
            `SELECT substring(statement from 'removed-[a-z]+') AS s FROM audit.audit_log WHERE statement LIKE '%/* removed-%' AND ${NOT_OUR_READS} ORDER BY id`,
          )
        ).rows,
    );
    expect(reads.map((r) => r.s)).toEqual(['removed-read', 'removed-next']);
  });

  it("records denied attempts to switch auditing off: the owner's commands, audit settings, a protected table's schema", async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE SCHEMA IF NOT EXISTS records');
      await c.query('CREATE TABLE IF NOT EXISTS records.charts (id int PRIMARY KEY)');
    });
    expect((await runCli(['protect', 'records.charts'], { DATABASE_URL: db.url })).code).toBe(0);
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      const tries = [
        'ALTER TABLE customers DISABLE TRIGGER audit_row_change /* denied-1 */',
        `SET pgaudit.log = 'none' /* denied-2 */`,
        'SET session_replication_role = replica /* denied-3 */',
        'DROP TABLE customers /* denied-4 */',
        'SELECT * FROM records.charts /* denied-5 */',
        'SET log_statement_stats = on /* not about auditing */',
      ];
      for (const sql of tries) await expect(c.query(sql)).rejects.toThrow(/must be owner|permission denied/);
    });
    await ingestUntil(`statement LIKE '%denied-5%'`, 1);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT action, outcome, schema_name, table_name, error FROM audit.audit_log
        WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND (statement LIKE '%denied-%' OR statement LIKE '%not about auditing%') ORDER BY log_line_num`,
          )
        ).rows,
    );
    expect(rows).toEqual([
      { action: 'ALTER TABLE', outcome: 'failure', schema_name: 'public', table_name: 'customers', error: '42501: must be owner of table customers' },
      { action: 'SET', outcome: 'failure', schema_name: null, table_name: null, error: '42501: permission denied to set parameter "pgaudit.log"' },
      { action: 'SET', outcome: 'failure', schema_name: null, table_name: null, error: '42501: permission denied to set parameter "session_replication_role"' },
      { action: 'DROP TABLE', outcome: 'failure', schema_name: 'public', table_name: 'customers', error: '42501: must be owner of table customers' },
      { action: 'SELECT', outcome: 'failure', schema_name: 'records', table_name: null, error: '42501: permission denied for schema records' },
    ]);
  });

  it('a COPY ... TO of a protected table is a read: pgaudit.log_rows, under which pgaudit logs no COPY, is pinned off for the database and the application may not set it', async () => {
    // With pgaudit.log_rows on, pgaudit writes no line for a COPY of a table (pgaudit/pgaudit#240,
    // checked on this server): init pins it off for the database, which outranks postgresql.conf
    // and ALTER SYSTEM; only a superuser may set it for a session.
    const pinned = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ setconfig: string[] }>(
            `SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database() AND s.setrole = 0`,
          )
        ).rows[0]!.setconfig,
    );
    expect(pinned).toContain('pgaudit.log_rows=off');
    await withClient(urlFor(db.name, 'app_login', { application_name: 'exporter' }), async (c) => {
      await expect(c.query(`SET pgaudit.log_rows = on /* copy-hide */`)).rejects.toThrow(/permission denied to set parameter "pgaudit.log_rows"/);
      await c.query(`SET app.customer_id = '7'`);
      await c.query('COPY customers TO STDOUT /* copy-export */');
    });
    await ingestUntil(`statement LIKE '%copy-export%'`, 1);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT action, outcome, table_name, session_user_name, app_customer_id, statement, error FROM audit.audit_log
              WHERE source = 'pgaudit' AND ${NOT_OUR_READS} AND ((application_name = 'exporter' AND action <> 'SET') OR statement LIKE '%copy-hide%') ORDER BY log_line_num`,
          )
        ).rows,
    );
    expect(rows).toEqual([
      {
        action: 'SET',
        outcome: 'failure',
        table_name: null,
        session_user_name: 'app_login',
        app_customer_id: null,
        statement: 'SET pgaudit.log_rows = on /* copy-hide */',
        error: '42501: permission denied to set parameter "pgaudit.log_rows"',
      },
      // pgaudit writes two lines for a COPY of a table under row-level security (substatements 1 and
      // 2: the COPY and the query it runs); the server's context line comes from the one scan, so the
      // first is recorded with its context unknown.
      {
        action: 'SELECT',
        outcome: 'success',
        table_name: 'customers',
        session_user_name: 'app_login',
        app_customer_id: null,
        statement: 'COPY customers TO STDOUT /* copy-export */',
        error: null,
      },
      {
        action: 'SELECT',
        outcome: 'success',
        table_name: 'customers',
        session_user_name: 'app_login',
        app_customer_id: '7',
        statement: 'COPY customers TO STDOUT /* copy-export */',
        error: null,
      },
    ]);
  });

  it('--log-source sql reads the same log through the connection, and either source takes up where the other left off', async () => {
    // The ingester's login has no file access to the server: audit.read_log() reads csvlog files of
    // log_directory for it (sql/migrations/010). Switching sources reads nothing twice: every pass
    // below finds no line already present, and the receipts stay contiguous for verify.
    const sqlEnv = () => ({ DATABASE_URL: urlFor(db.name, 'ingest_login'), PGAUDIT_LOG_SOURCE: 'sql', AUDIT_CONTEXT_WAIT: '2s' });
    // The receipts so far, as verify judges them (an earlier test here moved a position on purpose).
    const archive = await tempArchiveDir();
    const keys = await makeKeys();
    const ingestFindings = async () => {
      const shipped = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--drain', '--slot', `s_${db.name}_sql`] }), {
        DATABASE_URL: urlFor(db.name, 'ship_login'),
      });
      expect(shipped.code, shipped.stderr).toBe(0);
      const verified = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
      return (JSON.parse(verified.stdout) as { findings: { code: string; message: string }[] }).findings.filter((f) => f.code.startsWith('ingest-'));
    };
    const before = await ingestFindings();
    const count = (marker: string) =>
      withClient(
        db.url,
        async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE statement LIKE $1 AND ${NOT_OUR_READS}`, [`%${marker}%`])).rows[0].n,
      );
    const read = (marker: string) => withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT full_name FROM customers WHERE id = 9 /* ${marker} */`));
    const overSql = async (marker: string) => {
      for (let i = 0; i < 50 && (await count(marker)) === 0; i++) {
        const r = await runCli(['ingest'], sqlEnv());
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/, 0 already present\)/);
        await sleep(100);
      }
      expect(await count(marker)).toBe(1);
    };
    await read('over sql 1');
    await overSql('over sql 1');
    await read('over sql 2');
    await ingestUntil(`statement LIKE '%over sql 2%'`, 1); // the directory again (asserts 0 already present)
    await read('over sql 3');
    await overSql('over sql 3');
    // And the shipper's built-in ingester over SQL (a sidecar with no access to the database host).
    // (A read that returns its row: the server's context line comes at once, so the shipper's
    // ingester, which waits a minute for one, writes the event now.)
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '9'`);
      await c.query(`SELECT full_name FROM customers WHERE id = 9 /* over sql 4 */`);
    });
    const sidecar = startCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', `s_${db.name}_sql`, '--log-source', 'sql'] }), {
      DATABASE_URL: urlFor(db.name, 'ship_ingest_login'), // a shipper that ingests holds both roles
      AUDIT_CONTEXT_WAIT: '2s',
    });
    const stopped = waitFor(sidecar);
    try {
      await expect.poll(() => count('over sql 4'), { timeout: 15_000, interval: 200 }).toBe(1);
    } finally {
      sidecar.kill('SIGTERM');
      const out = await stopped;
      expect(out.code, out.stderr).toBe(0);
    }
    const both = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', 'x', '--log-source', 'sql', '--log-dir', logDir] }), {
      DATABASE_URL: urlFor(db.name, 'ship_login'),
    });
    expect(both.stderr).toMatch(/--log-dir \(PGAUDIT_LOG_DIR\) and --log-source sql do not go together/);

    // What the functions refuse: anything but a csvlog file name, and unbounded reads; nobody but the ingester may call them.
    await withClient(urlFor(db.name, 'ingest_login'), async (c) => {
      await expect(c.query(`SELECT audit.read_log('../postgresql.auto.conf', 0, 100)`)).rejects.toThrow(/not a csvlog or jsonlog file name/);
      await expect(c.query(`SELECT audit.read_log('postgresql.csv', 0, 100000000)`)).rejects.toThrow(/at most 16 MiB/);
      expect((await c.query(`SELECT audit.read_log('no-such-file.csv', 0, 10) AS b`)).rows[0].b).toBeNull();
    });
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await expect(c.query(`SELECT * FROM audit.log_files()`)).rejects.toThrow(/permission denied/);
    });
    const noDir = await runCli(['ingest'], { DATABASE_URL: urlFor(db.name, 'ingest_login') });
    expect(noDir.code).toBe(2);
    expect(noDir.stderr).toBe(
      "pg-audit-shipper: error: --log-dir (PGAUDIT_LOG_DIR) is required: the server's csvlog directory; or read the log over SQL (--log-source sql), through the RDS API (--log-source rds) or from Cloud Logging (--log-source cloud-logging)\n",
    );

    // The receipts of all three passes join up: verify finds nothing more skipped or read twice.
    expect(await ingestFindings()).toEqual(before);
  });

  it("a session's log lines that never reached ingest (a position moved past them, a file removed) are an event with the session and how many", async () => {
    const { readdir, stat } = await import('node:fs/promises');
    const newestLog = async () => {
      const files = (await readdir(logDir)).filter((f) => f.endsWith('.csv'));
      const dated = await Promise.all(files.map(async (f) => ({ f, s: await stat(`${logDir}/${f}`) })));
      return dated.sort((a, b) => b.s.mtimeMs - a.s.mtimeMs)[0]!;
    };
    await withClient(urlFor(db.name, 'app_login', { application_name: 'lost-lines' }), async (app) => {
      const pid = (await app.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await app.query(`SELECT full_name FROM customers WHERE id = 11 /* lost lines 1 */`);
      await ingestUntil(`statement LIKE '%lost lines 1%'`, 1);
      // Three more reads whose lines the ingester will never see: its saved position is moved past
      // them (as a deleted or truncated file would take them away).
      for (const n of [2, 3, 4]) await app.query(`SELECT full_name FROM customers WHERE id = 11 /* lost lines ${n} */`);
      await sleep(500); // the logging collector has written them
      const { f, s } = await newestLog();
      await withClient(urlFor(db.name, 'ingest_login'), (c) => c.query(`UPDATE audit.ingest_files SET byte_offset = $2 WHERE file_name = $1`, [f, s.size]));
      await app.query(`SELECT full_name FROM customers WHERE id = 11 /* lost lines 5 */`);
      for (let i = 0; i < 50; i++) {
        await runCli(['ingest'], ingestEnv());
        const n = await withClient(
          db.url,
          async (c) => (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE statement LIKE '%lost lines 5%' AND ${NOT_OUR_READS}`)).rows[0].n,
        );
        if (n > 0) break;
        await sleep(100);
      }
      const gaps = await withClient(db.url, async (c) =>
        (
          await c.query<{ statement: string; outcome: string; backend_pid: number; application_name: string; session_user_name: string }>(
            `SELECT statement, outcome, backend_pid, application_name, session_user_name FROM audit.audit_log WHERE action = 'LOG LINES MISSING' ORDER BY id`,
          )
        ).rows.filter((r) => r.backend_pid === pid),
      );
      expect(gaps).toHaveLength(1);
      expect(gaps[0]).toMatchObject({ outcome: 'failure', application_name: 'lost-lines', session_user_name: 'app_login' });
      const m = /^session (\S+): lines (\d+)-(\d+) \((\d+)\) before line (\d+) at (\S+) byte \d+$/.exec(gaps[0]!.statement)!;
      expect(m, gaps[0]!.statement).not.toBeNull();
      expect(Number(m[4])).toBeGreaterThanOrEqual(3); // the three reads' lines, at least
      expect(Number(m[3]) + 1).toBe(Number(m[5]));
      expect(m[6]).toBe(f);
      // The reads that did arrive are there once; the lost ones are not (nothing made up).
      const arrived = await withClient(db.url, async (c) =>
        (
          await c.query<{ s: string }>(
            `SELECT substring(statement from 'lost lines [0-9]') AS s FROM audit.audit_log WHERE statement LIKE '%lost lines%' AND action = 'SELECT' AND ${NOT_OUR_READS} ORDER BY id`,
          )
        ).rows.map((r) => r.s),
      );
      expect(arrived).toEqual(['lost lines 1', 'lost lines 5']);

      // The archive does not look complete: verify reports the lost lines until a reviewer acknowledges them.
      const archive = await tempArchiveDir();
      const keys = await makeKeys();
      const shipped = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--drain', '--slot', `s_${db.name}_lost`] }), {
        DATABASE_URL: urlFor(db.name, 'ship_login'),
      });
      expect(shipped.code, shipped.stderr).toBe(0);
      const verified = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
      expect(verified.code).toBe(1);
      const lost = (JSON.parse(verified.stdout) as { findings: { code: string; message: string }[] }).findings.filter((x) => x.code === 'log-lines-missing');
      expect(lost.map((x) => x.message)).toContainEqual(expect.stringContaining(gaps[0]!.statement));
    });
  });

  it('reports an unreadable log directory in one line', async () => {
    const r = await runCli(['ingest', '--log-dir', '/nonexistent/log'], { DATABASE_URL: urlFor(db.name, 'ingest_login') });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--log-dir \(PGAUDIT_LOG_DIR\) \/nonexistent\/log cannot be read: ENOENT/);
  });
});
