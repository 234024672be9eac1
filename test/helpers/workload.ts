import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { runCli } from './cli.js';
import { urlFor, withClient } from './db.js';
import { requireEnv } from './env.js';

export const APP_USERS = ['dr.smith', 'dr.jones', 'nurse.joy', 'billing.bob', 'admin.ann'];

/** A small deterministic PRNG: the same workload on every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A clinic's day on the example schema: `customers` patients registered, read, corrected and a
 * few removed by several application users through two database roles, plus denied attempts by a
 * role without access. Reads, writes that read (a WHERE clause) and denials reach audit_log through
 * pgaudit and `ingest`.
 */
export async function clinicWorkload(db: { name: string; url: string }, customers: number): Promise<{ pgauditEvents: number }> {
  await withClient(urlFor('postgres'), (c) =>
    c
      .query(
        `DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'report_login') THEN CREATE ROLE report_login LOGIN IN ROLE phi_app; END IF;
  END $$`,
      )
      .catch(() => undefined),
  );
  const rnd = prng(4711);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  let pgauditEvents = 0;
  const roles = ['app_login', 'report_login'];
  const clients = await Promise.all(
    roles.map(async (r) => {
      const c = new (await import('pg')).default.Client({
        connectionString: urlFor(db.name, r, { application_name: r === 'app_login' ? 'clinic-portal' : 'reports' }),
      });
      await c.connect();
      return c;
    }),
  );
  try {
    const as = async (user: string, customer: number) => {
      const c = pick(clients);
      await c.query(`SET app.user_id = '${user}'`);
      await c.query(`SET app.customer_id = '${customer}'`);
      return c;
    };
    for (let id = 1; id <= customers; id++) {
      const c = await as(pick(APP_USERS), id);
      await c.query('INSERT INTO customers (id, full_name) VALUES ($1, $2)', [id, `Patient ${id}`]);
    }
    for (let i = 0; i < customers * 2; i++) {
      const id = 1 + Math.floor(rnd() * customers);
      const c = await as(pick(APP_USERS), id);
      const r = rnd();
      if (r < 0.6) {
        await c.query('SELECT full_name FROM customers WHERE id = $1', [id]);
        pgauditEvents++;
      } else if (r < 0.9) {
        // A write that reads (WHERE): trigger row events, and pgaudit's statement-level WRITE event.
        await c.query(`UPDATE customers SET full_name = full_name || '.' WHERE id = $1`, [id]);
        pgauditEvents++;
      } else if (r < 0.93) {
        await c.query('DELETE FROM customers WHERE id = $1', [id]);
        pgauditEvents++;
      }
    }
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  await withClient(urlFor(db.name, 'ship_login'), async (c) => {
    for (let i = 0; i < 7; i++) {
      await c.query(`SELECT * FROM customers WHERE id = ${i + 1}`).catch(() => undefined);
      pgauditEvents++;
    }
  });
  await ingestAll(db, pgauditEvents);
  return { pgauditEvents };
}

/** The logging collector writes asynchronously: ingest until every expected pgaudit row is in (reads of the trail itself, by these helpers and the shipper, are events too and not counted). */
export async function ingestAll(db: { name: string; url: string }, expected: number): Promise<void> {
  const env = { DATABASE_URL: urlFor(db.name, 'ingest_login'), PGAUDIT_LOG_DIR: requireEnv('TEST_PG_LOG_DIR') };
  for (let i = 0; i < 100; i++) {
    const r = await runCli(['ingest'], env);
    expect(r.code, r.stderr).toBe(0);
    const n = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'pgaudit' AND NOT (schema_name = 'audit' AND action = 'SELECT')`,
          )
        ).rows[0]!.n,
    );
    if (n >= expected) {
      expect(n).toBe(expected);
      return;
    }
    await sleep(100);
  }
  throw new Error(`pgaudit events did not all arrive (${expected} expected)`);
}
