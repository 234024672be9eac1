import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';

/**
 * `doctor` against the real PostgreSQL 15 of the tests (self-managed). The managed platforms'
 * checklists are tested on fact vectors (test/unit/platform.test.ts): none of those services runs here.
 */
describe('doctor --platform self', () => {
  it('says ready for a database init prepared, and names what breaks it, each with its fix', async () => {
    const db = await freshDatabase('doctor');
    const ready = await runCli(['doctor', '--database-url', db.url, '--platform', 'self']);
    expect(ready.code, ready.stdout + ready.stderr).toBe(0);
    expect(ready.stdout).toMatch(/^ok {3}self-managed PostgreSQL\n/);
    expect(ready.stdout).toMatch(/\nok {3}the audit schema is installed and current\n/);
    expect(ready.stdout).toMatch(/\nready\n$/);

    // What an owner with superuser rights (or an accident) can undo: the guard, the revoke.
    await withClient(db.url, async (c) => {
      await c.query('ALTER EVENT TRIGGER audit_guard_protected_ddl DISABLE');
      await c.query('GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC');
    });
    const broken = await runCli(['doctor', '--database-url', db.url]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/^platform: self \(what the server looks like; --platform to say otherwise\)\n/);
    expect(broken.stdout).toContain(
      'FIX  the DDL guard is disabled (audit_guard_protected_ddl): table owners can switch auditing off\n     -> pg-audit-shipper init (as a superuser)\n',
    );
    expect(broken.stdout).toContain('FIX  PUBLIC may execute pg_logical_emit_message: with --reads rows an application could write made-up reads\n');
    expect(broken.stdout).toMatch(/\n2 to fix\n$/);
    expect(broken.stderr).toBe('pg-audit-shipper: error: 2 things to fix before the capture and the shipper can work\n');

    // A login that is no superuser (the shipper's) is told what it cannot do, not refused.
    const asShipper = await runCli(['doctor', '--database-url', urlFor(db.name, 'ship_login'), '--platform', 'self']);
    expect(asShipper.stdout).toContain(
      'FIX  ship_login is no superuser: init needs one to install the audit schema on self-managed PostgreSQL\n     -> run init as a superuser (postgres)\n',
    );
    expect(asShipper.stdout).toContain('ok   ship_login may stream (replication)\n');

    // Told the wrong platform: said at once.
    const wrong = await runCli(['doctor', '--database-url', db.url, '--platform', 'rds']);
    expect(wrong.stdout).toMatch(/^FIX {2}this server looks like self-managed PostgreSQL, not Amazon RDS for PostgreSQL\n {5}-> run doctor --platform self\n/);
    // Azure's checklist, read off this server's catalog: its protected tables record reads as
    // pgaudit's statements only (the default), which Azure's log records cannot carry; --reads rows
    // takes a table off the list.
    const asAzure = async () => (await runCli(['doctor', '--database-url', db.url, '--platform', 'azure'])).stdout;
    const statementsOnly =
      /FIX {2}(\d+) protected tables? records? reads only as pgaudit statements, which cannot be ingested on Azure .*: reads of (.*) are not recorded\n/;
    const before = statementsOnly.exec(await asAzure());
    expect(before?.[2]).toContain('public.customers');
    const protectRows = await runCli(['protect', 'public.customers', '--reads', 'rows', '--database-url', db.url]);
    expect(protectRows.code, protectRows.stderr).toBe(0);
    const after = statementsOnly.exec(await asAzure());
    expect(after?.[2] ?? '').not.toContain('public.customers');
    // A login that may not read the list (the application's) is not told all is well.
    const asApp = (await runCli(['doctor', '--database-url', urlFor(db.name, 'app_login'), '--platform', 'azure'])).stdout;
    expect(asApp).toContain('note app_login may not read audit.protected_tables');
    expect(asApp).not.toContain('no protected table relies on pgaudit');
  });

  it('an uninstalled database: the schema is the thing to fix; a bad platform name is refused in one line', async () => {
    const db = await freshDatabase('doctorbare', { init: false });
    const r = await runCli(['doctor', '--database-url', db.url]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('FIX  the audit schema is not installed in this database\n     -> pg-audit-shipper init (as a superuser)\n');
    const bad = await runCli(['doctor', '--database-url', db.url, '--platform', 'heroku']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--platform.*heroku.*(self, rds, aurora, cloudsql, alloydb, azure|choices)/);
  });
});
