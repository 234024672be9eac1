import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';

let db: { name: string; url: string };
const appUrl = () => urlFor(db.name, 'app_login', { application_name: 'clinic-web' });

beforeAll(async () => {
  db = await freshDatabase('capture');
});

async function auditRows(where = 'true') {
  return withClient(
    db.url,
    async (c) =>
      (
        await c.query(
          `SELECT action, outcome, source, schema_name, table_name, row_id, changed_columns, session_user_name,
            current_role_name, app_user_id, app_customer_id, application_name, txid IS NOT NULL AS has_txid,
            backend_pid IS NOT NULL AS has_pid, occurred_at IS NOT NULL AS has_time
       FROM audit.audit_log WHERE action NOT IN ('PROTECT', 'UNPROTECT') AND (${where}) ORDER BY id`,
        )
      ).rows,
  ); // protection events: protection.test.ts
}

describe('row triggers on a protected table', () => {
  it('record INSERT, UPDATE (column names only), DELETE and TRUNCATE with who and where', async () => {
    await withClient(appUrl(), async (c) => {
      await c.query(`SET app.user_id = 'dr.smith'`);
      await c.query(`SET app.customer_id = '7'`);
      await c.query(`INSERT INTO customers (id, full_name, email_encrypted) VALUES (7, 'Jane Roe', pgp_sym_encrypt('jane@example.org', $1))`, ['k-secret']);
      await c.query(`UPDATE customers SET full_name = 'Jane R. Roe', email_encrypted = email_encrypted WHERE id = 7`);
      await c.query('DELETE FROM customers WHERE id = 7');
    });
    await withClient(db.url, (c) => c.query('TRUNCATE customers'));
    const rows = await auditRows(`source = 'trigger'`);
    const common = { outcome: 'success', source: 'trigger', schema_name: 'public', table_name: 'customers', has_txid: true, has_pid: true, has_time: true };
    // The application's writes: its login, its settings, its name.
    const byApp = {
      session_user_name: 'app_login',
      current_role_name: 'app_login',
      app_user_id: 'dr.smith',
      app_customer_id: '7',
      application_name: 'clinic-web',
    };
    expect(rows).toEqual([
      {
        ...common,
        action: 'INSERT',
        row_id: '7',
        changed_columns: null,
        ...byApp,
      },
      {
        ...common,
        action: 'UPDATE',
        row_id: '7',
        changed_columns: ['full_name'],
        ...byApp,
      },
      {
        ...common,
        action: 'DELETE',
        row_id: '7',
        changed_columns: null,
        ...byApp,
      },
      {
        ...common,
        action: 'TRUNCATE',
        row_id: null,
        changed_columns: null,
        session_user_name: 'postgres',
        current_role_name: 'postgres',
        app_user_id: null,
        app_customer_id: null,
        application_name: null,
      },
    ]);
    // Never a PHI value in the trail.
    const text = JSON.stringify(await withClient(db.url, async (c) => (await c.query('SELECT * FROM audit.audit_log')).rows));
    expect(text).not.toMatch(/Jane|jane@example|k-secret/);
  });

  it('record nothing for a rolled-back transaction', async () => {
    const before = (await auditRows()).length;
    await withClient(appUrl(), async (c) => {
      await c.query(`SET app.customer_id = '8'`);
      await c.query('BEGIN');
      await c.query(`INSERT INTO customers (id, full_name) VALUES (8, 'Rolled Back')`);
      await c.query(`UPDATE customers SET full_name = 'x' WHERE id = 8`);
      await c.query('ROLLBACK');
    });
    expect((await auditRows()).length).toBe(before);
  });

  it('record the acting role after SET ROLE', async () => {
    await withClient(db.url, async (c) => {
      await c.query('SET ROLE phi_app');
      await c.query(`SET app.customer_id = '9'`);
      await c.query(`INSERT INTO customers (id, full_name) VALUES (9, 'x')`);
    });
    const [row] = await auditRows(`row_id = '9'`);
    expect(row).toMatchObject({ session_user_name: 'postgres', current_role_name: 'phi_app' });
  });

  it('use the key named at protect time, and protecting twice keeps one trigger set', async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE TABLE public.notes (note_no int, clinic text, body text, PRIMARY KEY (clinic, note_no))');
    });
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['protect', 'public.notes', '--key', 'clinic', 'note_no'], { DATABASE_URL: db.url });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    await withClient(db.url, async (c) => {
      await c.query(`INSERT INTO public.notes VALUES (3, 'north', 'secret body')`);
      const trig = await c.query(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'public.notes'::regclass AND NOT tgisinternal`);
      expect(trig.rows[0].n).toBe(2);
    });
    expect((await auditRows(`table_name = 'notes'`))[0]).toMatchObject({ action: 'INSERT', row_id: 'north,3' });
    const un = await runCli(['unprotect', 'public.notes'], { DATABASE_URL: db.url });
    expect(un.code).toBe(0);
    await withClient(db.url, (c) => c.query(`INSERT INTO public.notes VALUES (4, 'north', 'b')`));
    expect(await auditRows(`table_name = 'notes'`)).toHaveLength(1);
  });

  it('refuse a table without a primary key unless a key is named, with the fix in the message', async () => {
    await withClient(db.url, (c) => c.query('CREATE TABLE public.nokey (a int)'));
    const r = await runCli(['protect', 'public.nokey'], { DATABASE_URL: db.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/has no primary key.*--key/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const missing = await runCli(['protect', 'public.does_not_exist'], { DATABASE_URL: db.url });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/does not exist/);
  });
});

describe('audit_log is append-only', () => {
  it('refuses UPDATE, DELETE and TRUNCATE to the application, the shipper, and even its owner', async () => {
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) VALUES (20, 'x')`));
    for (const user of ['app_login', 'ship_login']) {
      await withClient(urlFor(db.name, user), async (c) => {
        for (const sql of ['UPDATE audit.audit_log SET action = $$x$$', 'DELETE FROM audit.audit_log', 'TRUNCATE audit.audit_log']) {
          await expect(c.query(sql), `${user}: ${sql}`).rejects.toMatchObject({ code: '42501' });
        }
        await expect(
          c.query(`INSERT INTO audit.audit_log (occurred_at, source, action, outcome, session_user_name)
          VALUES (now(), 'trigger', 'INSERT', 'success', 'forged')`),
        ).rejects.toMatchObject({ code: '42501' });
      });
    }
    // The owner (and a superuser acting through it) is stopped by the trigger, not by privileges.
    await withClient(db.url, async (c) => {
      await c.query('SET ROLE audit_owner');
      await expect(c.query('DELETE FROM audit.audit_log')).rejects.toThrow(/append-only: DELETE refused/);
      await expect(c.query(`UPDATE audit.audit_log SET outcome = 'failure'`)).rejects.toThrow(/append-only: UPDATE refused/);
      await expect(c.query('TRUNCATE audit.audit_log')).rejects.toThrow(/append-only: TRUNCATE refused/);
    });
    expect(await auditRows(`row_id = '20'`)).toHaveLength(1);
  });
});

describe('HIPAA basics of the example schema', () => {
  it('row-level security shows a session only its own customer', async () => {
    await withClient(db.url, async (c) => {
      await c.query(`INSERT INTO customers (id, full_name) VALUES (101, 'one'), (102, 'two'), (103, 'three')`);
    });
    await withClient(appUrl(), async (c) => {
      expect((await c.query('SELECT id FROM customers')).rows).toEqual([]);
      await c.query(`SET app.customer_id = '101'`);
      expect((await c.query('SELECT id FROM customers ORDER BY id')).rows).toEqual([{ id: 101 }]);
      await expect(c.query(`INSERT INTO customers (id, full_name) VALUES (104, 'other customer')`)).rejects.toMatchObject({ code: '42501' });
    });
  });

  it('the email column round-trips through pgcrypto only with the key', async () => {
    await withClient(appUrl(), async (c) => {
      await c.query(`SET app.customer_id = '102'`);
      await c.query('UPDATE customers SET email_encrypted = pgp_sym_encrypt($1, $2) WHERE id = 102', ['two@example.org', 'the-key']);
      const stored = await c.query(`SELECT encode(email_encrypted, 'escape') AS raw FROM customers WHERE id = 102`);
      expect(stored.rows[0].raw).not.toContain('two@example.org');
      const ok = await c.query('SELECT pgp_sym_decrypt(email_encrypted, $1) AS email FROM customers WHERE id = 102', ['the-key']);
      expect(ok.rows[0].email).toBe('two@example.org');
      await expect(c.query('SELECT pgp_sym_decrypt(email_encrypted, $1) FROM customers WHERE id = 102', ['wrong-key'])).rejects.toThrow(
        /Wrong key or corrupt data/,
      );
    });
    // The key is nowhere in the database's definitions.
    await withClient(db.url, async (c) => {
      const defs = await c.query(`SELECT string_agg(prosrc, ' ') AS src FROM pg_proc`);
      expect(defs.rows[0].src).not.toContain('the-key');
    });
  });

  it('the shipper role cannot read PHI tables, only the audit log', async () => {
    await withClient(urlFor(db.name, 'ship_login'), async (c) => {
      await expect(c.query('SELECT * FROM customers')).rejects.toMatchObject({ code: '42501' });
      const n = await c.query('SELECT count(*)::int AS n FROM audit.audit_log');
      expect(n.rows[0].n).toBeGreaterThan(0);
    });
  });

  it('plain TCP is refused; TLS is required', async () => {
    const port = process.env.TEST_PG_PORT!;
    const tcp = { host: process.env.TEST_PG_HOST ?? '127.0.0.1', port: Number(port), user: 'postgres', database: db.name };
    await expect(withClient({ ...tcp, ssl: false }, (c) => c.query('SELECT 1'))).rejects.toThrow(/no encryption/);
    // The test cluster's certificate is self-signed; production verifies it (sslmode=verify-full).
    const ok = await withClient(
      { ...tcp, ssl: { rejectUnauthorized: false } },
      async (c) => (await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl,
    );
    expect(ok).toBe(true);
  });
});
