import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createLogger } from '../../src/log.js';
import { init } from '../../src/capture/migrate.js';
import { requireEnv } from './env.js';

/** A URL for `database` as `user` on the test cluster (local socket, trust authentication). */
export function urlFor(database: string, user = 'postgres', params: Record<string, string> = {}): string {
  const u = new URL(requireEnv('TEST_DATABASE_URL'));
  u.pathname = `/${database}`;
  u.username = user;
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

export async function withClient<T>(url: string | pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(typeof url === 'string' ? { connectionString: url } : url);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * A fresh database per test file: roles are cluster-wide and idempotent, everything else
 * (audit schema, example schema, pgaudit per-database settings) is isolated.
 */
const created: string[] = [];

/**
 * Drop the replication slots of the databases this test file created: slots are cluster-wide,
 * limited in number, and an idle one pins WAL for every other test.
 */
export async function dropCreatedSlots(): Promise<void> {
  if (created.length === 0) return;
  await withClient(urlFor('postgres'), async (c) => {
    const { rows } = await c.query<{ slot_name: string; active_pid: number | null }>(
      'SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = ANY($1)',
      [created],
    );
    for (const r of rows) {
      if (r.active_pid) await c.query('SELECT pg_terminate_backend($1)', [r.active_pid]);
      await c.query('SELECT pg_drop_replication_slot($1)', [r.slot_name]).catch(() => undefined);
    }
  });
  created.length = 0;
}

export async function freshDatabase(label: string, opts: { init?: boolean } = {}): Promise<{ name: string; url: string }> {
  const name = `t_${label}_${randomBytes(4).toString('hex')}`;
  created.push(name);
  await withClient(urlFor('postgres'), async (c) => {
    await c.query(`CREATE DATABASE ${name}`);
  });
  const url = urlFor(name);
  if (opts.init !== false) {
    await withClient(url, (c) => init(c, { example: true, log: createLogger('silent') }));
    await ensureLoginRoles();
  }
  return { name, url };
}

/** Login roles standing in for the application's pool and the shipper's service account. */
export async function ensureLoginRoles(): Promise<void> {
  await withClient(urlFor('postgres'), async (c) => {
    await c.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_login') THEN CREATE ROLE app_login LOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ship_login') THEN CREATE ROLE ship_login LOGIN REPLICATION; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ingest_login') THEN CREATE ROLE ingest_login LOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ship_ingest_login') THEN CREATE ROLE ship_ingest_login LOGIN REPLICATION; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'review_login') THEN CREATE ROLE review_login LOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'console_login') THEN CREATE ROLE console_login LOGIN; END IF;
    END $$`);
    // The compliance console records its use (audit_console) and acknowledges findings (audit_reviewer).
    await c.query('GRANT audit_console, audit_reviewer TO console_login');
    await c.query('GRANT audit_reviewer TO review_login');
    await c.query('GRANT phi_app TO app_login');
    await c.query('GRANT audit_shipper TO ship_login');
    // A shipper that also ingests pgaudit events (ship --log-dir) needs both roles; the ingester can append.
    await c.query('GRANT audit_shipper, audit_ingester TO ship_ingest_login');
    await c.query('GRANT audit_ingester TO ingest_login');
  }).catch((err) => {
    // Parallel test files race to create the same cluster-wide roles; the loser retries once.
    if ((err as { code?: string }).code !== '23505' && (err as { code?: string }).code !== 'XX000') throw err;
    return ensureLoginRoles();
  });
}

/**
 * The pgaudit read events of statements tagged `case:<tag>` (outside the audit schema, so a test's
 * own reads of the trail are not counted), by tag in code-point order: how many, the longest
 * statement, who read and in which app context.
 */
export async function taggedReads(url: string): Promise<{ tag: string; n: number; len: number; who: string; context: string | null }[]> {
  return withClient(url, async (c) =>
    (
      await c.query<{ tag: string; n: number; len: number; who: string; context: string | null }>(
        `SELECT substring(statement FROM 'case:([a-z0-9-]+)') AS tag, count(*)::int AS n, max(length(statement))::int AS len,
                max(session_user_name) AS who, max(app_context) AS context
           FROM audit.audit_log
          WHERE source = 'pgaudit' AND statement LIKE '%case:%' AND action = 'SELECT' AND schema_name <> 'audit' GROUP BY 1`,
      )
    ).rows.sort((a, b) => (a.tag < b.tag ? -1 : 1)),
  );
}
