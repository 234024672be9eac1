import { beforeAll, describe, expect, it } from 'vitest';
import { makeKeys, readArchive, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';
import { runCli } from '../helpers/cli.js';
import { ensureLoginRoles, freshDatabase, urlFor, withClient } from '../helpers/db.js';

/**
 * `init`, `protect`, shipping and `doctor` run as a role made to resemble a managed platform's admin
 * role (rds_superuser, cloudsqlsuperuser, azure_pg_admin): a login with CREATEROLE and CREATEDB,
 * owning its database, a member of the predefined roles those platforms grant, and no superuser.
 * No managed service is reachable here, so this is PostgreSQL 15 with such a role. What it cannot
 * show: the platforms' own extensions of the admin role (RDS lets rds_superuser create event
 * triggers and grant rds_replication; this role can do neither), listed in the README.
 */
const ADMIN = 'platform_admin';
let db: { name: string; url: string };
let keys: TestKeys;
const asAdmin = () => urlFor(db.name, ADMIN);

beforeAll(async () => {
  keys = await makeKeys();
  db = await freshDatabase('padmin', { init: false });
  await withClient(urlFor('postgres'), async (c) => {
    await c.query(
      `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${ADMIN}') THEN CREATE ROLE ${ADMIN} LOGIN CREATEROLE CREATEDB; END IF; END $$`,
    );
    await c.query(`GRANT pg_read_all_settings, pg_monitor, pg_signal_backend TO ${ADMIN}`);
    await c.query(`ALTER DATABASE ${db.name} OWNER TO ${ADMIN}`);
  });
});

describe("init as a managed platform's admin role", () => {
  it('installs the schema, leaving out what needs a superuser, each part said in one line with what to ask for; the capture works; a superuser closes the gaps later', async () => {
    const r = await runCli(['init'], { DATABASE_URL: asAdmin() });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^applied migrations\/001_audit_schema, .*migrations\/015_pgaudit_log_rows$/);
    expect(lines.slice(1).map((l) => /^could not \(needs a superuser\): ([a-z-]+): .+; instead: .+$/.exec(l)?.[1])).toEqual([
      'ddl-guard',
      'emit-message',
      'log-over-sql',
      'pgaudit-log-rows',
      'pgaudit-settings',
      'replication',
    ]);
    expect(r.stdout).toMatch(/replication: .*instead: RDS\/Aurora: GRANT rds_replication TO <ship login>/);
    // Running it again changes nothing and says the gaps again.
    const again = await runCli(['init'], { DATABASE_URL: asAdmin() });
    expect(again.stdout.split('\n')[0]).toMatch(/^schema up to date/);
    expect(again.stdout.match(/^could not/gm)).toHaveLength(6);

    // doctor, as the admin, names each gap with its remedy.
    const doctor = await runCli(['doctor', '--platform', 'rds'], { DATABASE_URL: asAdmin() });
    expect(doctor.stdout).toMatch(/note init left out ddl-guard \(it needs a superuser\): no DDL guard/);
    expect(doctor.stdout).toMatch(/FIX {2}the DDL guard is missing/);

    // The capture works without the guard: the admin protects its table, writes are shipped and verified.
    await withClient(asAdmin(), async (c) => {
      await c.query('CREATE SCHEMA clinic');
      await c.query('CREATE TABLE clinic.notes (id int PRIMARY KEY, body text)');
    });
    const p = await runCli(['protect', 'clinic.notes'], { DATABASE_URL: asAdmin() });
    expect(p.code, p.stderr).toBe(0);
    await withClient(asAdmin(), (c) => c.query(`INSERT INTO clinic.notes SELECT g, 'note ' || g FROM generate_series(1, 5) g`));
    await ensureLoginRoles(); // ship_login: REPLICATION, given by the superuser here as the platform gives it (rds_replication)
    const archive = await tempArchiveDir();
    const ship = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', `s_${db.name}`, '--drain'] }), {
      DATABASE_URL: urlFor(db.name, 'ship_login'),
    });
    expect(ship.code, ship.stderr).toBe(0);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(records.filter((x) => x.table_name === 'notes' && x.action === 'INSERT').map((x) => x.row_id)).toEqual(['1', '2', '3', '4', '5']);

    // Reads with row identifiers (no server log needed: the managed platforms' read path) work too.
    const rows = await runCli(['protect', 'clinic.notes', '--reads', 'rows'], { DATABASE_URL: asAdmin() });
    expect(rows.code, rows.stderr).toBe(0);
    await withClient(asAdmin(), async (c) => {
      await c.query(`SET app.customer_id = '77'`);
      await c.query('SELECT body FROM clinic.notes WHERE id = 3');
    });
    const again2 = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', `s_${db.name}`, '--drain'] }), {
      DATABASE_URL: urlFor(db.name, 'ship_login'),
    });
    expect(again2.code, again2.stderr).toBe(0);
    const after = await readArchive(archive, keys.keys);
    expect(after.report.findings).toEqual([]);
    expect(after.records.filter((x) => x.op === 'read').map((x) => [x.table_name, x.row_id, x.session_user_name, x.app_customer_id])).toEqual([
      ['notes', '3', ADMIN, '77'],
    ]);

    // The gap is real: without the guard, the owner can drop a capture trigger.
    await withClient(asAdmin(), (c) => c.query('DROP TRIGGER audit_truncate ON clinic.notes'));

    // A superuser's init runs what was left out and clears the gaps. The guard it installs checks
    // every protected table at once, so the dropped trigger stops it until protect puts it back.
    const refused = await runCli(['init'], { DATABASE_URL: db.url });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /init failed, nothing was changed: closing what an earlier init as a non-superuser left open \(ddl-guard, .*\): refused: clinic\.notes is protected .*audit triggers .*protect the table it names again/,
    );
    expect((await runCli(['protect', 'clinic.notes'], { DATABASE_URL: asAdmin() })).code).toBe(0);
    const closing = await runCli(['init'], { DATABASE_URL: db.url });
    expect(closing.code, closing.stderr).toBe(0);
    expect(closing.stdout).toBe(
      'closed, as a superuser, what an earlier init could not do: ddl-guard, emit-message, log-over-sql, pgaudit-log-rows, pgaudit-settings, replication\n',
    );
    const state = await withClient(db.url, async (c) => ({
      triggers: (await c.query<{ evtname: string }>('SELECT evtname FROM pg_event_trigger ORDER BY evtname')).rows.map((x) => x.evtname),
      gaps: (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM audit.capture_gaps')).rows[0]!.n,
    }));
    expect(state).toEqual({ triggers: ['audit_follow_protected_drop', 'audit_guard_protected_ddl'], gaps: 0 });
    await withClient(asAdmin(), async (c) => {
      await expect(c.query('DROP TRIGGER audit_truncate ON clinic.notes')).rejects.toThrow(/refused: clinic\.notes is protected by pg-audit-shipper/);
    });
  });
});
