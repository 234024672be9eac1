import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';
import { requireEnv } from '../helpers/env.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/paths.js';

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

async function events(
  table: string,
): Promise<{ action: string; session_user_name: string; schema_name: string; table_name: string; statement: string | null }[]> {
  return withClient(
    db.url,
    async (c) =>
      (
        await c.query(
          `SELECT action, session_user_name, schema_name, table_name, statement FROM audit.audit_log
      WHERE source = 'trigger' AND action NOT IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE') AND table_name LIKE $1 ORDER BY id`,
          [`${table}%`],
        )
      ).rows,
  );
}

async function isProtected(schema: string, table: string): Promise<boolean> {
  return withClient(
    db.url,
    async (c) =>
      (await c.query('SELECT count(*)::int AS n FROM audit.protected_tables WHERE schema_name = $1 AND table_name = $2', [schema, table])).rows[0].n === 1,
  );
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
    // The policy through which the server records who each read was for (sql/migrations/007).
    ['DISABLE ROW LEVEL SECURITY (reads no longer attributed)', (t) => `ALTER TABLE ${t} DISABLE ROW LEVEL SECURITY`],
    ["NO FORCE ROW LEVEL SECURITY (its owner's reads unattributed)", (t) => `ALTER TABLE ${t} NO FORCE ROW LEVEL SECURITY`],
    ['DROP POLICY audit_read_context', (t) => `DROP POLICY audit_read_context ON ${t}`],
    ['ALTER POLICY audit_read_context USING (true)', (t) => `ALTER POLICY audit_read_context ON ${t} USING (true)`],
    ['a policy of its own, which the permissive audit_read_context would void', (t) => `CREATE POLICY mine ON ${t} USING (id > 0)`],
  ];
  for (const [attack, sql] of refused) {
    it(`refuses ${attack}, and capture goes on`, async () => {
      const t = await ownedTable(
        `t_${attack
          .replace(/[^a-z]/gi, '')
          .toLowerCase()
          .slice(0, 30)}`,
      );
      await withClient(ownerUrl(), async (c) => {
        await expect(c.query(sql(t))).rejects.toThrow(/^refused: clinic\.\S+ is protected by pg-audit-shipper and /);
        await c.query(`INSERT INTO ${t} VALUES (1, 'after the attempt')`);
      });
      const rows = await withClient(
        db.url,
        async (c) =>
          (
            await c.query(`SELECT action, row_id FROM audit.audit_log WHERE schema_name = 'clinic' AND table_name = $1 AND action = 'INSERT'`, [
              t.split('.')[1],
            ])
          ).rows,
      );
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
      [owner(), 'clinic', 'visits_old'],
      [owner(), 'archive_2026', 'visits_old'],
    ]);
    expect(renames[0]!.statement).toMatch(/^clinic\.visits is now clinic\.visits_old \(still protected\): ALTER TABLE clinic\.visits RENAME TO visits_old$/);
    const write = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT schema_name, table_name, row_id FROM audit.audit_log WHERE action = 'INSERT' AND table_name = 'visits_old'`)).rows,
    );
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
      ['PROTECT', 'postgres', 'key id; reads attributed by the permissive policy audit_read_context'],
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
    expect((await events('plans')).map((e) => [e.action, e.session_user_name])).toEqual([
      ['PROTECT', 'postgres'],
      ['UNPROTECT', 'postgres'],
    ]);
    // Unprotected, the owner may do what it likes with its table.
    await withClient(ownerUrl(), (c) => c.query(`ALTER TABLE ${t} ENABLE ROW LEVEL SECURITY`));
  });
});

/** Row and protection events of a protected table, as the trail holds them. */
async function trail(
  schema: string,
  table: string,
): Promise<{ action: string; table_name: string; relation_name: string | null; row_id: string | null; old_row_id: string | null }[]> {
  return withClient(
    db.url,
    async (c) =>
      (
        await c.query(
          `SELECT action, table_name, relation_name, row_id, old_row_id FROM audit.audit_log
      WHERE source = 'trigger' AND schema_name = $1 AND table_name = $2 ORDER BY id`,
          [schema, table],
        )
      ).rows,
  );
}

/** A partitioned table owned by the table owner, with one partition, protected. */
async function partitioned(name: string): Promise<void> {
  await withClient(ownerUrl(), async (c) => {
    await c.query(`CREATE TABLE clinic.${name} (id int, d date, note text, PRIMARY KEY (id, d)) PARTITION BY RANGE (d)`);
    await c.query(`CREATE TABLE clinic.${name}_2025 PARTITION OF clinic.${name} FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
  });
  const r = await runCli(['protect', `clinic.${name}`], { DATABASE_URL: db.url });
  expect(r.code, r.stderr).toBe(0);
}

describe('protection covers partitions, present and future', () => {
  it('records writes and TRUNCATE of every partition (also one created later) under the partitioned table, naming the partition', async () => {
    await partitioned('visits_p');
    await withClient(ownerUrl(), async (c) => {
      await c.query(`CREATE TABLE clinic.visits_p_2026 PARTITION OF clinic.visits_p FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
      await c.query(`INSERT INTO clinic.visits_p VALUES (1, '2025-03-01', 'a'), (2, '2026-03-01', 'b')`);
      await c.query(`UPDATE clinic.visits_p_2026 SET note = 'c' WHERE id = 2`);
      await c.query('TRUNCATE clinic.visits_p_2025');
    });
    const rows = (await trail('clinic', 'visits_p')).map((e) => [e.action, e.relation_name, e.row_id]);
    expect(rows).toEqual([
      ['PROTECT', null, null],
      ['PARTITION', 'clinic.visits_p_2025', null],
      ['PARTITION', 'clinic.visits_p_2026', null],
      ['CREATE TABLE', 'clinic.visits_p_2026', null],
      ['INSERT', 'clinic.visits_p_2025', '1,2025-03-01'],
      ['INSERT', 'clinic.visits_p_2026', '2,2026-03-01'],
      ['UPDATE', 'clinic.visits_p_2026', '2,2026-03-01'],
      ['TRUNCATE', 'clinic.visits_p_2025', null],
    ]);
  });

  const refused: [string, string][] = [
    ["DISABLE TRIGGER of a partition's cloned audit_row_change", 'ALTER TABLE clinic.labs_p_2025 DISABLE TRIGGER audit_row_change'],
    ["DROP TRIGGER of a partition's audit_truncate (then TRUNCATE it unseen)", 'DROP TRIGGER audit_truncate ON clinic.labs_p_2025'],
    ["REVOKE of the auditor's SELECT on a partition (reads of it unlogged)", 'REVOKE SELECT ON clinic.labs_p_2025 FROM audit_auditor'],
  ];
  for (const [attack, sql] of refused) {
    it(`refuses ${attack}`, async () => {
      await withClient(db.url, (c) => c.query('DROP TABLE IF EXISTS clinic.labs_p'));
      await partitioned('labs_p');
      await withClient(ownerUrl(), (c) => expect(c.query(sql)).rejects.toThrow(/^refused: clinic\.labs_p_2025 is protected by pg-audit-shipper and /));
    });
  }

  it('keeps a detached partition protected, under its own name: its writes after DETACH are recorded', async () => {
    await partitioned('notes_p');
    await withClient(ownerUrl(), async (c) => {
      await c.query('ALTER TABLE clinic.notes_p DETACH PARTITION clinic.notes_p_2025');
      await c.query(`INSERT INTO clinic.notes_p_2025 VALUES (9, '2025-05-05', 'after detach')`);
      await c.query('TRUNCATE clinic.notes_p_2025');
    });
    expect(await isProtected('clinic', 'notes_p_2025')).toBe(true);
    expect((await trail('clinic', 'notes_p_2025')).map((e) => [e.action, e.row_id])).toEqual([
      ['DETACH', null],
      ['INSERT', '9,2025-05-05'],
      ['TRUNCATE', null],
    ]);
  });
});

describe('unprotecting partitions', () => {
  it('unprotect of one partition of a protected table is refused; of the partitioned table, takes its partitions off the list too', async () => {
    await partitioned('plans_p');
    const part = await runCli(['unprotect', 'clinic.plans_p_2025'], { DATABASE_URL: db.url });
    expect(part.code).toBe(2);
    expect(part.stderr).toMatch(/clinic\.plans_p_2025 is protected as a partition of clinic\.plans_p: unprotect that table, or detach this one first/);
    expect((await runCli(['unprotect', 'clinic.plans_p'], { DATABASE_URL: db.url })).code).toBe(0);
    expect(await isProtected('clinic', 'plans_p')).toBe(false);
    expect(await isProtected('clinic', 'plans_p_2025')).toBe(false);
    // Unprotected, the owner may do what it likes with the partition.
    await withClient(ownerUrl(), (c) => c.query('ALTER TABLE clinic.plans_p_2025 ENABLE ROW LEVEL SECURITY'));
  });
});

describe('upgrading from version 4', () => {
  it('a partitioned table protected before version 5 has its partitions covered by `init`', async () => {
    const old = await freshDatabase('protection_v4', { init: false });
    await withClient(old.url, async (c) => {
      for (const m of ['001_audit_schema', '002_shipping', '003_review', '004_protection']) {
        await c.query(await readFile(path.join(PACKAGE_ROOT, 'sql', 'migrations', `${m}.sql`), 'utf8'));
      }
      await c.query('CREATE SCHEMA clinic');
      await c.query('CREATE TABLE clinic.visits (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d)');
      await c.query(`CREATE TABLE clinic.visits_2025 PARTITION OF clinic.visits FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
      await c.query(`SELECT audit.protect('clinic.visits')`);
    });
    const r = await runCli(['init'], { DATABASE_URL: old.url });
    expect(r.code, r.stderr).toBe(0);
    await withClient(old.url, async (c) => {
      await c.query(`INSERT INTO clinic.visits VALUES (1, '2025-06-01')`);
      await c.query('TRUNCATE clinic.visits_2025');
      const rows = (await c.query(`SELECT action, table_name, relation_name FROM audit.audit_log WHERE action IN ('INSERT', 'TRUNCATE') ORDER BY id`)).rows;
      expect(rows).toEqual([
        { action: 'INSERT', table_name: 'visits', relation_name: 'clinic.visits_2025' },
        { action: 'TRUNCATE', table_name: 'visits', relation_name: 'clinic.visits_2025' },
      ]);
    });
  });
});

describe('protection follows key columns', () => {
  it('records the old key of an UPDATE that changes it', async () => {
    const t = await ownedTable('keyed');
    await withClient(ownerUrl(), async (c) => {
      await c.query(`INSERT INTO ${t} VALUES (2, 'x')`);
      await c.query(`UPDATE ${t} SET id = 99 WHERE id = 2`);
      await c.query(`UPDATE ${t} SET note = 'y' WHERE id = 99`);
    });
    expect((await trail('clinic', 'keyed')).filter((e) => e.action === 'UPDATE').map((e) => [e.row_id, e.old_row_id])).toEqual([
      ['99', '2'],
      ['99', null],
    ]);
  });

  it('follows RENAME COLUMN of the key: writes keep their row identifier', async () => {
    const t = await ownedTable('renamed_key');
    await withClient(ownerUrl(), async (c) => {
      await c.query(`ALTER TABLE ${t} RENAME COLUMN id TO patient_id`);
      await c.query(`INSERT INTO ${t} VALUES (4, 'x')`);
    });
    const rows = await trail('clinic', 'renamed_key');
    expect(rows.map((e) => [e.action, e.row_id])).toEqual([
      ['PROTECT', null],
      ['KEY RENAMED', null],
      ['ALTER TABLE', null],
      ['INSERT', '4'],
    ]);
  });

  it('refuses DROP COLUMN of the key (every later event would have no row identifier)', async () => {
    const t = await ownedTable('dropped_key');
    await withClient(ownerUrl(), (c) =>
      expect(c.query(`ALTER TABLE ${t} DROP COLUMN id`)).rejects.toThrow(/^refused: .* key column\(s\) id are the row identifier/),
    );
  });
});

describe('reads no grant shows: through a parent, of the trail, of planner statistics', () => {
  const ingestEnv = () => ({ DATABASE_URL: urlFor(db.name, 'ingest_login'), PGAUDIT_LOG_DIR: requireEnv('TEST_PG_LOG_DIR') });
  /** The logging collector writes asynchronously: ingest until `count` pgaudit rows match `where`. */
  async function ingested(where: string, params: unknown[], count: number): Promise<Record<string, unknown>[]> {
    let rows: Record<string, unknown>[] = [];
    for (let i = 0; i < 50 && rows.length < count; i++) {
      const r = await runCli(['ingest'], ingestEnv());
      expect(r.code, r.stderr).toBe(0);
      rows = await withClient(
        db.url,
        async (c) =>
          (
            await c.query(
              `SELECT action, schema_name, table_name, relation_name, session_user_name, statement FROM audit.audit_log
          WHERE source = 'pgaudit' AND ${where} ORDER BY id`,
              params,
            )
          ).rows,
      );
      if (rows.length < count) await sleep(100);
    }
    return rows;
  }

  it('a read of a partition, and a read through the parent of a protected partition, are reads of the protected table', async () => {
    await partitioned('scans_p');
    await withClient(ownerUrl(), async (c) => {
      await c.query('CREATE TABLE clinic.imaging (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d)');
      await c.query(`CREATE TABLE clinic.imaging_2025 PARTITION OF clinic.imaging FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
    });
    expect((await runCli(['protect', 'clinic.imaging_2025'], { DATABASE_URL: db.url })).code).toBe(0);
    await withClient(ownerUrl(), async (c) => {
      await c.query(`CREATE TABLE clinic."Scans 2026" PARTITION OF clinic.scans_p FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
      await c.query('SELECT * FROM clinic.scans_p_2025 /* partition read */');
      await c.query('SELECT * FROM clinic.imaging /* parent read */');
      await c.query('SELECT * FROM clinic."Scans 2026" /* p quoted read */');
      await c.query(`INSERT INTO clinic."Scans 2026" VALUES (1, '2026-02-02', 'w')`);
    });
    const rows = await ingested(`statement LIKE '%/* p% read */'`, [], 3);
    expect(rows.map((r) => [r.schema_name, r.table_name, r.relation_name, r.session_user_name])).toEqual([
      ['clinic', 'scans_p', 'clinic.scans_p_2025', owner()],
      ['clinic', 'imaging_2025', 'clinic.imaging', owner()],
      ['clinic', 'scans_p', 'clinic."Scans 2026"', owner()],
    ]);
    // The row trigger names the partition the same way: one spelling for query --table.
    expect((await trail('clinic', 'scans_p')).filter((e) => e.action === 'INSERT').map((e) => e.relation_name)).toEqual(['clinic."Scans 2026"']);
  });

  it("a superuser's read of audit_log is a read of the trail; the ingester's own inserts are not", async () => {
    // (This suite's own reads of audit_log, as the superuser, are recorded too: they are told apart by their text.)
    await withClient(db.url, (c) => c.query('SELECT count(*) FROM audit.audit_log /* who read the trail */'));
    const rows = await ingested(`schema_name = 'audit' AND table_name = 'audit_log' AND statement LIKE '%/* who read the trail */'`, [], 1);
    expect(rows.map((r) => [r.action, r.session_user_name, r.statement])).toEqual([
      ['SELECT', 'postgres', 'SELECT count(*) FROM audit.audit_log /* who read the trail */'],
    ]);
    // The ingester's own INSERT ... ON CONFLICT is logged by pgaudit (it reads the arbiter columns),
    // but ingest passes add no events of the ingester's role on the trail.
    for (let i = 0; i < 3; i++) expect((await runCli(['ingest'], ingestEnv())).code).toBe(0);
    expect(await ingested(`table_name = 'audit_log' AND session_user_name = 'ingest_login'`, [], 0)).toEqual([]);
  });

  it('a read of pg_stats (most common values are column values) is recorded', async () => {
    await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers' /* statistics read */`));
    const rows = await ingested(`statement LIKE '%/* statistics read */'`, [], 1);
    expect(rows.map((r) => [r.action, r.schema_name, r.table_name, r.session_user_name])).toEqual([['SELECT', 'pg_catalog', 'pg_stats', 'app_login']]);
  });
});
