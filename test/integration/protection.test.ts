import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';

/**
 * The owner of a protected table (no superuser, no access to the audit schema) tries to switch its
 * capture off with ordinary DDL. Each weakening command is refused; each change of shape or name is
 * recorded and followed. As PostgreSQL 15 runs them, with the event triggers `init` installs.
 */
let db: { name: string; url: string };
const owner = () => `owner_${db.name}`;
const ownerUrl = () => urlFor(db.name, owner());

beforeAll(async () => {
  db = await freshDatabase('protection');
  await withClient(urlFor('postgres'), (c) => c.query(`CREATE ROLE ${owner()} LOGIN`));
  await withClient(db.url, async (c) => {
    await c.query(`CREATE SCHEMA clinic AUTHORIZATION ${owner()}`);
    await c.query(`CREATE SCHEMA archive_2026 AUTHORIZATION ${owner()}`);
  });
});

/** A fresh protected table owned by the table owner. */
async function ownedTable(name: string): Promise<string> {
  await withClient(ownerUrl(), (c) => c.query(`CREATE TABLE clinic.${name} (id int PRIMARY KEY, note text)`));
  const r = await runCli(['protect', `clinic.${name}`], { DATABASE_URL: db.url });
  expect(r.code, r.stderr).toBe(0);
  return `clinic.${name}`;
}

async function events(table: string): Promise<{ action: string; session_user_name: string; schema_name: string; table_name: string; statement: string | null }[]> {
  return withClient(db.url, async (c) => (await c.query(
    `SELECT action, session_user_name, schema_name, table_name, statement FROM audit.audit_log
      WHERE source = 'trigger' AND action NOT IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE') AND table_name LIKE $1 ORDER BY id`, [`${table}%`])).rows);
}

async function isProtected(schema: string, table: string): Promise<boolean> {
  return withClient(db.url, async (c) => (await c.query(
    'SELECT count(*)::int AS n FROM audit.protected_tables WHERE schema_name = $1 AND table_name = $2', [schema, table])).rows[0].n === 1);
}

describe("protection survives the table's owner", () => {
  const refused: [string, (t: string) => string][] = [
    ['DISABLE TRIGGER audit_row_change', (t) => `ALTER TABLE ${t} DISABLE TRIGGER audit_row_change`],
    ['DISABLE TRIGGER USER', (t) => `ALTER TABLE ${t} DISABLE TRIGGER USER`],
    ['DISABLE TRIGGER ALL', (t) => `ALTER TABLE ${t} DISABLE TRIGGER ALL`],
    ['DISABLE TRIGGER audit_truncate (then TRUNCATE unseen)', (t) => `ALTER TABLE ${t} DISABLE TRIGGER audit_truncate`],
    ['ENABLE REPLICA TRIGGER', (t) => `ALTER TABLE ${t} ENABLE REPLICA TRIGGER audit_row_change`],
    ['DROP TRIGGER', (t) => `DROP TRIGGER audit_row_change ON ${t}`],
    ['REVOKE SELECT FROM audit_auditor', (t) => `REVOKE SELECT ON ${t} FROM audit_auditor`],
    ['a child table via INHERITS', (t) => `CREATE TABLE ${t}_child (extra text) INHERITS (${t})`],
    ['CREATE RULE ... DO INSTEAD', (t) => `CREATE RULE divert AS ON UPDATE TO ${t} DO INSTEAD NOTHING`],
  ];
  for (const [attack, sql] of refused) {
    it(`refuses ${attack}, and capture goes on`, async () => {
      const t = await ownedTable(`t_${attack.replace(/[^a-z]/gi, '').toLowerCase().slice(0, 30)}`);
      await withClient(ownerUrl(), async (c) => {
        await expect(c.query(sql(t))).rejects.toThrow(/^refused: clinic\.\S+ is protected by pg-audit-shipper and /);
        await c.query(`INSERT INTO ${t} VALUES (1, 'after the attempt')`);
      });
      const rows = await withClient(db.url, async (c) => (await c.query(
        `SELECT action, row_id FROM audit.audit_log WHERE schema_name = 'clinic' AND table_name = $1 AND action = 'INSERT'`, [t.split('.')[1]])).rows);
      expect(rows).toEqual([{ action: 'INSERT', row_id: '1' }]);
    });
  }

  it('refuses it also to a superuser under session_replication_role = replica (the switch that silences row triggers)', async () => {
    const t = await ownedTable('replica_mode');
    await withClient(db.url, async (c) => {
      await c.query('SET session_replication_role = replica');
      await expect(c.query(`ALTER TABLE ${t} DISABLE TRIGGER audit_row_change`)).rejects.toThrow(/^refused: /);
    });
  });

  it('follows RENAME and SET SCHEMA: the table stays protected under its new name (the list the ingester reads follows), writes keep being captured', async () => {
    await ownedTable('visits');
    await withClient(ownerUrl(), async (c) => {
      await c.query('ALTER TABLE clinic.visits RENAME TO visits_old');
      await c.query('ALTER TABLE clinic.visits_old SET SCHEMA archive_2026');
      await c.query(`INSERT INTO archive_2026.visits_old VALUES (5, 'moved')`);
    });
    expect(await isProtected('clinic', 'visits')).toBe(false);
    expect(await isProtected('archive_2026', 'visits_old')).toBe(true);
    const renames = (await events('visits')).filter((e) => e.action === 'RENAME');
    expect(renames.map((e) => [e.session_user_name, e.schema_name, e.table_name])).toEqual([
      [owner(), 'clinic', 'visits_old'], [owner(), 'archive_2026', 'visits_old'],
    ]);
    expect(renames[0]!.statement).toMatch(/^clinic\.visits is now clinic\.visits_old \(still protected\): ALTER TABLE clinic\.visits RENAME TO visits_old$/);
    const write = await withClient(db.url, async (c) => (await c.query(
      `SELECT schema_name, table_name, row_id FROM audit.audit_log WHERE action = 'INSERT' AND table_name = 'visits_old'`)).rows);
    expect(write).toEqual([{ schema_name: 'archive_2026', table_name: 'visits_old', row_id: '5' }]);
  });

  it('records ALTER COLUMN ... TYPE ... USING and DROP COLUMN, by whom; a dropped table is recorded and leaves the list', async () => {
    await ownedTable('notes');
    await withClient(ownerUrl(), async (c) => {
      await c.query(`ALTER TABLE clinic.notes ALTER COLUMN note TYPE varchar(200) USING upper(note)`);
      await c.query('ALTER TABLE clinic.notes DROP COLUMN note');
      await c.query('DROP TABLE clinic.notes');
    });
    const rows = (await events('notes')).map((e) => [e.action, e.session_user_name, e.statement]);
    expect(rows).toEqual([
      ['PROTECT', 'postgres', 'key id'],
      ['ALTER TABLE', owner(), 'ALTER TABLE clinic.notes ALTER COLUMN note TYPE varchar(200) USING upper(note)'],
      ['ALTER TABLE', owner(), 'ALTER TABLE clinic.notes DROP COLUMN note'],
      ['DROP TABLE', owner(), 'DROP TABLE clinic.notes'],
    ]);
    expect(await isProtected('clinic', 'notes')).toBe(false);
  });

  it('unprotect goes through (the table leaves the list first) and is recorded, as is protect', async () => {
    const t = await ownedTable('plans');
    const r = await runCli(['unprotect', t], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    expect(await isProtected('clinic', 'plans')).toBe(false);
    expect((await events('plans')).map((e) => [e.action, e.session_user_name])).toEqual([['PROTECT', 'postgres'], ['UNPROTECT', 'postgres']]);
    // Unprotected, the owner may do what it likes with its table.
    await withClient(ownerUrl(), (c) => c.query(`ALTER TABLE ${t} ENABLE ROW LEVEL SECURITY`));
  });
});
