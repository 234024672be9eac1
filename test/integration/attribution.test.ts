import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { requireEnv } from '../helpers/env.js';
import { runCli } from '../helpers/cli.js';

/**
 * A read is attributed to what current_setting('app.user_id') and current_setting('app.customer_id')
 * returned when it ran, or says app_context = 'unknown': never an earlier value. Each case is an
 * application changing the settings in a way a log-following ingester gets wrong (issue: SETs rolled
 * back, SET LOCAL, savepoints, quoting, one query string, startup options, RESET, DISCARD ALL,
 * set_config(), a function's SET clause). The read itself returns the settings it saw, so the test
 * compares the trail with the server, not with a value written into the test. PostgreSQL 15 +
 * pgaudit, with the policy audit_read_context that `protect` adds (sql/migrations/007).
 */
let db: { name: string; url: string };

beforeAll(async () => {
  db = await freshDatabase('attribution');
  await withClient(db.url, async (c) => {
    await c.query('CREATE SCHEMA clinic');
    await c.query('CREATE TABLE clinic.charts (id int PRIMARY KEY, note text)');
    await c.query(`INSERT INTO clinic.charts SELECT g, 'chart ' || g FROM generate_series(1, 20) g`);
    await c.query('CREATE TABLE clinic.loads (id int PRIMARY KEY, note text)');
    await c.query('GRANT USAGE ON SCHEMA clinic TO phi_app');
    await c.query('GRANT SELECT, INSERT, UPDATE ON clinic.charts, clinic.loads TO phi_app');
    // A function with its own SET clause: reads inside it see 14, whatever the session set.
    await c.query(`CREATE FUNCTION clinic.read_as_14() RETURNS text LANGUAGE plpgsql SET app.customer_id = '14' AS $f$
      DECLARE seen text;
      BEGIN
        SELECT coalesce(current_setting('app.customer_id', true), '') INTO seen FROM clinic.charts WHERE id = 1 /* case:function-set-clause */;
        RETURN seen;
      END $f$`);
    // The application's own function writing the message audit.read_context() writes.
    await c.query(`CREATE FUNCTION clinic.read_context() RETURNS void LANGUAGE plpgsql AS $f$
      BEGIN RAISE LOG 'audit read context {"user":"dr.alice","customer":"4711"}'; END $f$`);
    await c.query('GRANT EXECUTE ON FUNCTION clinic.read_as_14(), clinic.read_context() TO phi_app');
  });
  for (const [table, extra] of [
    ['clinic.charts', []],
    ['clinic.loads', ['--read-context', 'off']],
  ] as const) {
    const r = await runCli(['protect', table, ...extra], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
  }
});

/** What the read saw, from the same statement: current_setting() beside the row. */
const READ = (tag: string, where = 'id = 1') =>
  `SELECT coalesce(current_setting('app.user_id', true), '') AS u, coalesce(current_setting('app.customer_id', true), '') AS c, note
     FROM clinic.charts WHERE ${where} /* case:${tag} */`;

type Seen = { user: string | null; customer: string | null };
const seenOf = (rows: { u: string; c: string }[]): Seen => ({ user: rows[0]!.u || null, customer: rows[0]!.c || null });

async function read(c: pg.Client, tag: string): Promise<Seen> {
  return seenOf((await c.query<{ u: string; c: string }>(READ(tag))).rows);
}

async function ingestUntil(
  tags: string[],
): Promise<Map<string, { app_user_id: string | null; app_customer_id: string | null; app_context: string | null; action: string }[]>> {
  const env = { DATABASE_URL: urlFor(db.name, 'ingest_login'), PGAUDIT_LOG_DIR: requireEnv('TEST_PG_LOG_DIR'), AUDIT_CONTEXT_WAIT: '2s' };
  let found = new Map<string, { app_user_id: string | null; app_customer_id: string | null; app_context: string | null; action: string }[]>();
  for (let i = 0; i < 60 && tags.some((t) => !found.has(t)); i++) {
    const r = await runCli(['ingest'], env);
    expect(r.code, r.stderr).toBe(0);
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `SELECT substring(statement FROM 'case:([a-z0-9-]+)') AS tag, action, app_user_id, app_customer_id, app_context
         FROM audit.audit_log WHERE source = 'pgaudit' AND statement LIKE '%case:%' ORDER BY id`,
          )
        ).rows,
    );
    found = new Map();
    for (const { tag, ...rest } of rows) found.set(tag, [...(found.get(tag) ?? []), rest]);
    await sleep(150);
  }
  return found;
}

describe('reads are attributed to what the server had set when they ran', () => {
  it('follows every way an application changes app.user_id / app.customer_id, and never carries an old value over', async () => {
    const expected = new Map<string, Seen | 'unknown'>();
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.user_id = 'dr.who'`);
      await c.query(`SET app.customer_id = '1'`);
      await c.query('BEGIN');
      await c.query(`SET app.customer_id = '7'`);
      await c.query('ROLLBACK'); // PostgreSQL reverts the SET
      expected.set('rolled-back-set', await read(c, 'rolled-back-set'));

      await c.query('BEGIN');
      await c.query(`SET app.customer_id = '2'`);
      await c.query('SAVEPOINT s');
      await c.query(`SET app.customer_id = '3'`);
      await c.query('ROLLBACK TO SAVEPOINT s');
      expected.set('rollback-to-savepoint', await read(c, 'rollback-to-savepoint'));
      await c.query('SAVEPOINT t');
      await c.query(`SET LOCAL app.customer_id = '4'`);
      await c.query('ROLLBACK TO SAVEPOINT t');
      expected.set('set-local-rolled-back', await read(c, 'set-local-rolled-back'));
      await c.query('COMMIT');

      await c.query('BEGIN');
      await c.query(`SET LOCAL app.user_id = 'nurse.joy'`);
      expected.set('set-local', await read(c, 'set-local'));
      await c.query('COMMIT');
      expected.set('after-set-local', await read(c, 'after-set-local'));

      await c.query(`SET app . customer_id = '9'`);
      expected.set('spaces-around-the-dot', await read(c, 'spaces-around-the-dot'));
      await c.query(`SET "app"."customer_id" = '10'`);
      expected.set('quoted-name', await read(c, 'quoted-name'));
      await c.query('SET app.customer_id = $$11$$');
      expected.set('dollar-quoted', await read(c, 'dollar-quoted'));
      await c.query(`SET app.customer_id = E'1\\x32'`);
      expected.set('e-string', await read(c, 'e-string'));
      // One query string, as node-postgres sends a query without parameters: one implicit transaction.
      const multi = (await c.query(`SET app.customer_id = '8'; ${READ('set-and-select-in-one-string')}`)) as unknown as pg.QueryResult[];
      expected.set('set-and-select-in-one-string', seenOf(multi[1]!.rows));

      await c.query(`SELECT set_config('app.customer_id', '13', false)`); // no SET line at all
      expected.set('set-config', await read(c, 'set-config'));
      const fn = await c.query<{ seen: string }>('SELECT clinic.read_as_14() AS seen');
      expected.set('function-set-clause', { user: 'dr.who', customer: fn.rows[0]!.seen || null });
      // Extended protocol (bind parameters), and a prepared statement run by EXECUTE.
      expected.set('bind-parameters', seenOf((await c.query({ text: READ('bind-parameters', 'id = $1'), values: [2] })).rows));
      await c.query(`PREPARE by_id(int) AS ${READ('prepared', 'id = $1')}`);
      expected.set('prepared', seenOf((await c.query('EXECUTE by_id(3)')).rows));
      // A read that returns no row: the server recorded nothing for it.
      expect((await c.query(READ('no-row', 'id = -1'))).rows).toHaveLength(0);
      expected.set('no-row', 'unknown');
    });

    // Startup options, and what RESET, RESET ALL and DISCARD ALL go back to.
    await withClient({ connectionString: urlFor(db.name, 'app_login'), options: '-c app.customer_id=16' }, async (c) => {
      expected.set('startup-options', await read(c, 'startup-options'));
      await c.query(`SET app.customer_id = '17'`);
      await c.query('RESET app.customer_id');
      expected.set('reset', await read(c, 'reset'));
      await c.query(`SET app.customer_id = '18'`);
      await c.query('RESET ALL');
      expected.set('reset-all', await read(c, 'reset-all'));
      await c.query(`SET app.customer_id = '19'`);
      await c.query('DISCARD ALL');
      expected.set('discard-all', await read(c, 'discard-all'));
    });
    // A superuser bypasses row-level security: no line from the server, so unknown, not its SET.
    await withClient(db.url, async (c) => {
      await c.query(`SET app.customer_id = '20'`);
      await read(c, 'superuser');
      expected.set('superuser', 'unknown');
    });

    const found = await ingestUntil([...expected.keys()]);
    const got = Object.fromEntries(
      [...expected.keys()].map((tag) => {
        const events = found.get(tag) ?? [];
        return [tag, events.map((e) => (e.app_context === 'unknown' ? 'unknown' : { user: e.app_user_id, customer: e.app_customer_id }))];
      }),
    );
    expect(got).toEqual(Object.fromEntries([...expected].map(([tag, seen]) => [tag, [seen]])));
    // The cases the issue names, each with the value PostgreSQL itself had (a sanity check of the cases, not of the ingester).
    expect(expected.get('rolled-back-set')).toEqual({ user: 'dr.who', customer: '1' });
    expect(expected.get('set-local')).toEqual({ user: 'nurse.joy', customer: '2' });
    expect(expected.get('set-and-select-in-one-string')).toEqual({ user: 'dr.who', customer: '8' });
    expect(expected.get('function-set-clause')).toEqual({ user: 'dr.who', customer: '14' });
    expect(expected.get('discard-all')).toEqual({ user: null, customer: '16' });
  });

  it("an application's own function writing audit.read_context()'s message is a forgery event, and attributes nothing", async () => {
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '5'`);
      await c.query('SET search_path = clinic, audit, public'); // the server names a function without its schema when the path finds it
      await c.query(`SELECT read_context(), note FROM clinic.charts WHERE id = 5 /* case:forged-context */`);
    });
    const found = await ingestUntil(['forged-context']);
    expect(found.get('forged-context')).toEqual([{ action: 'SELECT', app_user_id: null, app_customer_id: '5', app_context: null }]);
    const forged = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT app_customer_id, app_context, statement, error FROM audit.audit_log WHERE action = 'FORGED AUDIT LINE'`)).rows,
    );
    expect(forged).toEqual([
      {
        app_customer_id: null,
        app_context: 'unknown',
        statement: 'audit read context {"user":"dr.alice","customer":"4711"}',
        error: expect.stringMatching(
          /^a LOG line that claims to be audit\.read_context\(\)'s, written from: PL\/pgSQL function read_context\(\) line \d+ at RAISE/,
        ),
      },
    ]);
  });

  it('a read of a partition by its own name is attributed when the partitioned table records rows (--reads both: the partition has the policy), and unknown with statements only', async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE TABLE clinic.stays (id int, d date, note text, PRIMARY KEY (id, d)) PARTITION BY RANGE (d)');
      await c.query("CREATE TABLE clinic.stays_2026 PARTITION OF clinic.stays FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
      await c.query(`INSERT INTO clinic.stays VALUES (1, '2026-05-01', 'stay 1')`);
      await c.query('GRANT SELECT ON clinic.stays, clinic.stays_2026 TO phi_app');
    });
    const readPartition = async (tag: string) =>
      withClient(urlFor(db.name, 'app_login'), async (c) => {
        await c.query(`SET app.user_id = 'dr.part'`);
        await c.query(`SET app.customer_id = '31'`);
        await c.query(`SELECT note FROM clinic.stays_2026 WHERE id = 1 /* case:${tag} */`);
      });
    expect((await runCli(['protect', 'clinic.stays'], { DATABASE_URL: db.url })).code).toBe(0);
    await readPartition('partition-statements');
    expect((await runCli(['protect', 'clinic.stays', '--reads', 'both'], { DATABASE_URL: db.url })).code).toBe(0);
    await readPartition('partition-both');
    const found = await ingestUntil(['partition-statements', 'partition-both']);
    expect(found.get('partition-statements')).toEqual([{ action: 'SELECT', app_user_id: null, app_customer_id: null, app_context: 'unknown' }]);
    expect(found.get('partition-both')).toEqual([
      { action: 'SELECT', app_user_id: 'dr.part', app_customer_id: '31', app_context: expect.not.stringMatching(/^unknown$/) },
    ]);
    expect((await runCli(['unprotect', 'clinic.stays'], { DATABASE_URL: db.url })).code).toBe(0);
  });

  it('--read-context off leaves row security alone (COPY FROM works) and records reads as unknown; unprotect restores row security', async () => {
    const rls = (t: string) =>
      withClient(
        db.url,
        async (c) => (await c.query(`SELECT relrowsecurity AS on, relforcerowsecurity AS forced FROM pg_class WHERE oid = $1::regclass`, [t])).rows[0],
      );
    expect(await rls('clinic.loads')).toEqual({ on: false, forced: false });
    expect(await rls('clinic.charts')).toEqual({ on: true, forced: true });
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '6'`);
      await c.query(`INSERT INTO clinic.loads VALUES (1, 'one')`);
      await c.query(`SELECT note FROM clinic.loads WHERE id = 1 /* case:read-context-off */`);
      // COPY FROM is refused to roles under row-level security: on clinic.charts, not on clinic.loads.
      await expect(c.query('COPY clinic.charts FROM STDIN')).rejects.toThrow(/COPY FROM not supported with row-level security/);
    });
    const found = await ingestUntil(['read-context-off']);
    expect(found.get('read-context-off')).toEqual([{ action: 'SELECT', app_user_id: null, app_customer_id: null, app_context: 'unknown' }]);
    expect((await runCli(['unprotect', 'clinic.charts'], { DATABASE_URL: db.url })).code).toBe(0);
    expect(await rls('clinic.charts')).toEqual({ on: false, forced: false });
    expect(
      await withClient(db.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM pg_policy WHERE polrelid = 'clinic.charts'::regclass`)).rows[0].n),
    ).toBe(0);
  });
});
