import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { requireEnv } from '../helpers/env.js';

/**
 * ingest --log-format jsonlog against the real server writing jsonlog (PostgreSQL 15+) beside its
 * csvlog. Changing log_destination is a change of the whole cluster (every shipper attests the
 * logging settings), so this file runs with the cluster-wide ones, alone (vitest.config.ts).
 */
const setDestination = (value: string | null) =>
  withClient(urlFor('postgres'), async (c) => {
    await c.query(value === null ? 'ALTER SYSTEM RESET log_destination' : `ALTER SYSTEM SET log_destination = '${value}'`);
    await c.query('SELECT pg_reload_conf()');
  });

afterAll(() => setDestination(null));

describe('ingest --log-format jsonlog', () => {
  it('reads the jsonlog as it reads the csvlog: the same events, each line once (its csvlog twin is the same line), directly or over SQL', async () => {
    const db = await freshDatabase('jsonlog');
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series(1, 10) g`));
    const logDir = requireEnv('TEST_PG_LOG_DIR');
    const jsonFiles = async () => (await readdir(logDir)).filter((f) => f.endsWith('.json'));
    const before = await jsonFiles();
    await setDestination('csvlog,jsonlog');
    await expect.poll(async () => (await jsonFiles()).length, { timeout: 10_000, interval: 100 }).toBeGreaterThan(before.length === 0 ? 0 : before.length - 1);
    await sleep(300);

    await withClient(urlFor(db.name, 'app_login', { application_name: 'jsonlog-case' }), async (c) => {
      await c.query(`SET app.user_id = 'dr.json'`);
      await c.query(`SET app.customer_id = '5'`);
      await c.query(`SELECT full_name FROM customers WHERE id = 5 /* json 1: naïve "quoted", tab\there */`);
    });
    await withClient(urlFor(db.name, 'ship_login'), async (c) => {
      await expect(c.query('SELECT full_name FROM customers /* json 2: denied */')).rejects.toThrow(/permission denied/);
    });
    const rows = (marker: string) =>
      withClient(
        db.url,
        async (c) =>
          (
            await c.query<Record<string, unknown>>(
              `SELECT action, outcome, table_name, session_user_name, app_user_id, app_customer_id, application_name, statement
               FROM audit.audit_log WHERE source = 'pgaudit' AND statement LIKE $1 AND NOT (schema_name = 'audit') ORDER BY id`,
              [`%${marker}%`],
            )
          ).rows,
      );
    const ingest = async (env: Record<string, string>) => {
      const r = await runCli(['ingest'], { DATABASE_URL: urlFor(db.name, 'ingest_login'), AUDIT_CONTEXT_WAIT: '2s', ...env });
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    for (let i = 0; i < 50 && ((await rows('json 1')).length === 0 || (await rows('json 2')).length === 0); i++) {
      await ingest({ PGAUDIT_LOG_DIR: logDir, PGAUDIT_LOG_FORMAT: 'jsonlog' });
      await sleep(200);
    }
    expect(await rows('json 1')).toEqual([
      {
        action: 'SELECT',
        outcome: 'success',
        table_name: 'customers',
        session_user_name: 'app_login',
        app_user_id: 'dr.json',
        app_customer_id: '5',
        application_name: 'jsonlog-case',
        statement: 'SELECT full_name FROM customers WHERE id = 5 /* json 1: naïve "quoted", tab\there */',
      },
    ]);
    expect((await rows('json 2')).map((r) => [r.outcome, r.session_user_name])).toEqual([['failure', 'ship_login']]);

    // The csvlog holds the same lines, numbered the same: read it too, and nothing is doubled.
    const csv = await ingest({ PGAUDIT_LOG_DIR: logDir });
    expect(csv).toMatch(/[1-9]\d* already present/);
    expect(await rows('json 1')).toHaveLength(1);
    expect(await rows('json 2')).toHaveLength(1);

    // Over SQL, in jsonlog: a third read arrives once.
    await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT 1 FROM customers WHERE id = 5 /* json 3 */`));
    for (let i = 0; i < 50 && (await rows('json 3')).length === 0; i++) {
      await ingest({ PGAUDIT_LOG_SOURCE: 'sql', PGAUDIT_LOG_FORMAT: 'jsonlog' });
      await sleep(200);
    }
    expect(await rows('json 3')).toHaveLength(1);
  });
});
