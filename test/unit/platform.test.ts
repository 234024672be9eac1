import { describe, expect, it } from 'vitest';
import { diagnose, looksLike, setParameter, type Check, type ServerFacts } from '../../src/capture/platform.js';

/**
 * `doctor`'s checklists on fact vectors. No managed service is reachable from the tests: these facts
 * are what each platform's catalogs show, as its documentation describes them (parameter names,
 * admin roles); the self-managed checklist also runs against the real server (test/integration/doctor.test.ts).
 */
const READY: ServerFacts = {
  version: 150018,
  settings: {
    wal_level: 'logical',
    shared_preload_libraries: 'pgaudit',
    max_replication_slots: '10',
    log_destination: 'csvlog',
    logging_collector: 'on',
  },
  adminRoles: [],
  login: { name: 'postgres', superuser: true, replication: true, memberOf: [] },
  schema: { applied: ['migrations/001_audit_schema', 'migrations/009_row_reads_only'], latest: 'migrations/009_row_reads_only' },
  extensions: ['plpgsql'],
  emitMessagePublic: false,
  eventTriggers: { audit_guard_protected_ddl: 'A', audit_follow_protected_drop: 'A' },
  gaps: [],
  statementReadTables: [],
  freeSlots: 9,
  slot: { name: 'pg_audit_shipper', walStatus: 'reserved' },
};

const facts = (over: Partial<ServerFacts>): ServerFacts => ({ ...READY, ...over, settings: { ...READY.settings, ...over.settings } });
const fixes = (checks: Check[]) => checks.filter((c) => c.verdict === 'fix');
const find = (checks: Check[], says: RegExp) => checks.find((c) => says.test(c.says));

const RDS_ADMIN = { name: 'clinic_admin', superuser: false, replication: false, memberOf: ['rds_superuser', 'rds_replication'] };

describe('doctor: what each platform needs, and how to change it there', () => {
  it('a ready self-managed server: nothing to fix', () => {
    const checks = diagnose('self', READY);
    expect(fixes(checks)).toEqual([]);
    expect(checks.every((c) => c.verdict === 'ok')).toBe(true);
    expect(checks.length).toBeGreaterThan(8);
  });

  it('recognises each platform by its own settings or admin role', () => {
    expect(looksLike(READY)).toBe('self');
    expect(looksLike(facts({ settings: { 'rds.logical_replication': '1' } }))).toBe('rds');
    expect(looksLike(facts({ adminRoles: ['rds_superuser'] }))).toBe('rds');
    expect(looksLike(facts({ settings: { 'cloudsql.logical_decoding': 'on' } }))).toBe('cloudsql');
    expect(looksLike(facts({ adminRoles: ['alloydbsuperuser'] }))).toBe('alloydb');
    expect(looksLike(facts({ settings: { 'azure.extensions': 'PGAUDIT' } }))).toBe('azure');
    const told = diagnose('rds', READY);
    expect(told[0]).toEqual({
      verdict: 'fix',
      says: 'this server looks like self-managed PostgreSQL, not Amazon RDS for PostgreSQL',
      todo: 'run doctor --platform self',
    });
  });

  it('self-managed: logical decoding, pgaudit, the csvlog, the schema, the guard, emit_message, each with the statement that fixes it', () => {
    const checks = diagnose(
      'self',
      facts({
        settings: { wal_level: 'replica', shared_preload_libraries: 'pg_stat_statements', log_destination: 'stderr' },
        schema: { applied: ['migrations/001_audit_schema'], latest: 'migrations/009_row_reads_only' },
        eventTriggers: { audit_guard_protected_ddl: 'D' },
        emitMessagePublic: true,
      }),
    );
    expect(fixes(checks).map((c) => c.todo)).toEqual([
      "ALTER SYSTEM SET wal_level = 'logical', then restart PostgreSQL",
      "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements,pgaudit', then restart PostgreSQL; or protect every table with --reads rows, which needs no pgaudit",
      "ALTER SYSTEM SET log_destination = 'csvlog', then SELECT pg_reload_conf() and ALTER SYSTEM SET logging_collector = on, then restart PostgreSQL; or protect every table with --reads rows, which needs no pgaudit",
      'pg-audit-shipper init (it upgrades in one transaction)',
      'pg-audit-shipper init (as a superuser)',
      'pg-audit-shipper init (it revokes it)',
    ]);
    expect(find(checks, /DDL guard/)!.says).toBe('the DDL guard is missing (audit_follow_protected_drop): table owners can switch auditing off');
  });

  it('pgaudit.log_rows on (pgaudit then logs no COPY ... TO): init pins it off where it may, the parameter group elsewhere', () => {
    const on = { settings: { 'pgaudit.log_rows': 'on' } };
    expect(fixes(diagnose('self', facts(on))).map((c) => c.todo)).toEqual([
      "pg-audit-shipper init, as a superuser (it pins pgaudit.log_rows off for this database); a role's own setting outranks that: ALTER ROLE <role> RESET pgaudit.log_rows",
    ]);
    expect(find(diagnose('self', facts(on)), /log_rows/)!.says).toMatch(/^pgaudit\.log_rows is on: pgaudit then logs no COPY \.\.\. TO of a protected table/);
    expect(find(diagnose('rds', facts({ ...on, adminRoles: ['rds_superuser'] })), /log_rows/)!.todo).toBe(
      'aws rds modify-db-parameter-group --db-parameter-group-name <group> --parameters "ParameterName=pgaudit.log_rows,ParameterValue=off,ApplyMethod=immediate"',
    );
    expect(find(diagnose('self', facts({ settings: { 'pgaudit.log_rows': 'off' } })), /log_rows/)).toBeUndefined();
  });

  it('says what init left out as a non-superuser, with the remedy init recorded for it', () => {
    const gap = { gap: 'pgaudit-settings', consequence: 'pgaudit.role and pgaudit.log are not set', remedy: 'set them in the parameter group' };
    const checks = diagnose('rds', facts({ gaps: [gap] }));
    expect(find(checks, /init left out/)).toEqual({
      verdict: 'note',
      says: 'init left out pgaudit-settings (it needs a superuser): pgaudit.role and pgaudit.log are not set',
      todo: 'set them in the parameter group',
    });
    expect(find(diagnose('rds', READY), /init left out/)).toBeUndefined();
  });

  it('RDS and Aurora: rds.logical_replication in the (cluster) parameter group, CREATE EXTENSION pgaudit, rds_replication for the shipper, and what init cannot do as rds_superuser', () => {
    const rds = facts({
      settings: { 'rds.logical_replication': '0', wal_level: 'replica', log_destination: 'stderr' },
      adminRoles: ['rds_superuser', 'rds_replication'],
      login: { ...RDS_ADMIN, memberOf: ['rds_superuser'] },
      schema: { applied: [], latest: 'migrations/009_row_reads_only' },
    });
    const checks = diagnose('rds', rds);
    expect(find(checks, /wal_level/)!.todo).toBe(
      'aws rds modify-db-parameter-group --db-parameter-group-name <group> --parameters "ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot", ' +
        'then aws rds reboot-db-instance --db-instance-identifier <instance>',
    );
    expect(find(checks, /extension is not created/)!.todo).toBe('as rds_superuser: CREATE EXTENSION pgaudit');
    expect(find(checks, /init installs/)!).toMatchObject({
      verdict: 'ok',
      says: 'clinic_admin is a member of rds_superuser: init installs the audit schema as it, and says what it leaves out for want of a superuser',
    });
    // The csvlog the RDS API serves to ingest --log-source rds.
    expect(find(checks, /csvlog/)!).toMatchObject({
      verdict: 'fix',
      todo: expect.stringMatching(/^aws rds modify-db-parameter-group .*ParameterName=log_destination,ParameterValue=csvlog,ApplyMethod=immediate/),
    });
    expect(find(diagnose('rds', facts({ ...rds, login: { ...RDS_ADMIN, memberOf: [] } })), /init cannot/)!.todo).toBe(
      "run init as Amazon RDS for PostgreSQL's admin login (a member of rds_superuser)",
    );
    expect(find(checks, /may not stream/)!.todo).toBe('give ship its own login: GRANT rds_replication, audit_shipper TO <ship login>');
    expect(diagnose('aurora', rds).find((c) => /wal_level/.test(c.says))!.todo).toMatch(
      /^aws rds modify-db-cluster-parameter-group --db-cluster-parameter-group-name <group> --parameters "ParameterName=rds\.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot", then reboot the writer/,
    );
    // Aurora: every instance's log, the readers' too.
    const auroraCsv = diagnose('aurora', facts({ ...rds, settings: { ...rds.settings, log_destination: 'stderr,csvlog' } }));
    expect(find(auroraCsv, /csvlog/)!.says).toMatch(/--rds-instance <writer>,<reader>,\.\.\. .*list every instance/);
    // Ready as far as the platform goes: the parameter on, pgaudit created; emit_message cannot be revoked there.
    const ready = diagnose(
      'rds',
      facts({
        settings: { 'rds.logical_replication': '1', log_destination: 'csvlog' },
        adminRoles: ['rds_superuser'],
        extensions: ['pgaudit'],
        emitMessagePublic: true,
      }),
    );
    expect(fixes(ready)).toEqual([]);
    expect(find(ready, /pg_logical_emit_message/)!).toMatchObject({ verdict: 'note' });
    // How long RDS keeps log files: the default 3 days is a note (an ingester stopped longer loses
    // lines) with the parameter at its most, 7 days; 7 days is ok.
    const retention = (minutes: string) =>
      find(
        diagnose('rds', facts({ settings: { 'rds.logical_replication': '1', log_destination: 'csvlog', 'rds.log_retention_period': minutes } })),
        /log files/,
      )!;
    expect(retention('4320')).toEqual({
      verdict: 'note',
      says: "RDS removes log files after 3 days (rds.log_retention_period = 4320): pgaudit's lines not ingested by then are lost (recorded as LOG LINES MISSING)",
      todo: 'keep the ingester running (ship or ingest --follow), and give it the most RDS allows: aws rds modify-db-parameter-group --db-parameter-group-name <group> --parameters "ParameterName=rds.log_retention_period,ParameterValue=10080,ApplyMethod=immediate"',
    });
    expect(retention('90').says).toMatch(/after 1\.5 hours/);
    expect(retention('10080')).toEqual({ verdict: 'ok', says: 'RDS keeps log files 7 days (rds.log_retention_period), the most it allows' });
  });

  it('Cloud SQL and AlloyDB: their flags (which replace every flag given before), cloudsqlsuperuser', () => {
    const checks = diagnose(
      'cloudsql',
      facts({ settings: { 'cloudsql.logical_decoding': 'off', 'cloudsql.enable_pgaudit': 'off', wal_level: 'replica' }, adminRoles: ['cloudsqlsuperuser'] }),
    );
    expect(fixes(checks).map((c) => c.todo)).toEqual([
      'gcloud sql instances patch <instance> --database-flags=<the flags it has>,cloudsql.logical_decoding=on (the list replaces all flags; the instance restarts)',
      'gcloud sql instances patch <instance> --database-flags=<the flags it has>,cloudsql.enable_pgaudit=on (the list replaces all flags; the instance restarts); or protect every table with --reads rows, which needs no pgaudit',
    ]);
    // pgaudit's lines are in Cloud Logging: ingest reads them there once Data Access logs are on (a note: not visible from the database).
    expect(find(checks, /Cloud Logging/)!).toMatchObject({ verdict: 'note' });
    expect(find(checks, /Cloud Logging/)!.says).toMatch(/ingest --log-source cloud-logging --gcp-project <project> --gcp-instance <instance>/);
    expect(find(checks, /Cloud Logging/)!.todo).toMatch(/roles\/logging\.privateLogViewer/);
    const alloy = diagnose('alloydb', facts({ settings: { 'alloydb.logical_decoding': 'off', wal_level: 'replica' }, adminRoles: ['alloydbsuperuser'] }));
    expect(find(alloy, /Cloud Logging/)!.todo).toMatch(/AlloyDB for PostgreSQL: Data Read and Data Write/);
    expect(find(alloy, /wal_level/)!.todo).toBe(
      'gcloud alloydb instances update <instance> --cluster=<cluster> --region=<region> --database-flags=<the flags it has>,alloydb.logical_decoding=on (the list replaces all flags; the instance restarts)',
    );
  });

  it('Azure flexible server: wal_level and the extension allow-list as server parameters, then a restart', () => {
    const checks = diagnose(
      'azure',
      facts({ settings: { wal_level: 'replica', 'azure.extensions': 'PG_STAT_STATEMENTS', shared_preload_libraries: '' }, adminRoles: ['azure_pg_admin'] }),
    );
    expect(fixes(checks).map((c) => c.todo)).toEqual([
      'az postgres flexible-server parameter set --resource-group <group> --server-name <server> --name wal_level --value logical, then az postgres flexible-server restart --resource-group <group> --name <server>',
    ]);
    // pgaudit's lines cannot be ingested there (Azure's records name no user, database or session):
    // no pgaudit requirement, and a table whose reads are recorded only as statements is a fix.
    expect(find(checks, /diagnostic settings/)!).toMatchObject({ verdict: 'note' });
    expect(find(checks, /relies on pgaudit/)!).toMatchObject({ verdict: 'ok' });
    const statementsOnly = diagnose(
      'azure',
      facts({ settings: { wal_level: 'logical' }, adminRoles: ['azure_pg_admin'], statementReadTables: ['public.patients', 'public.visits'] }),
    );
    expect(fixes(statementsOnly)).toEqual([
      {
        verdict: 'fix',
        says: '2 protected tables record reads only as pgaudit statements, which cannot be ingested on Azure Database for PostgreSQL flexible server: reads of public.patients, public.visits are not recorded',
        todo: 'pg-audit-shipper protect <table> --reads rows, for each of them',
      },
    ]);
    // A login that may not read the list is told so: unknown is no "none".
    const unknown = diagnose('azure', facts({ settings: { wal_level: 'logical' }, adminRoles: ['azure_pg_admin'], statementReadTables: null }));
    expect(find(unknown, /audit\.protected_tables/)).toMatchObject({ verdict: 'note' });
    expect(find(unknown, /relies on pgaudit/)).toBeUndefined();
    // Elsewhere the same tables are fine: their statements are ingested.
    expect(find(diagnose('self', facts({ statementReadTables: ['public.patients'] })), /protected table/)).toBeUndefined();
  });

  it('a jsonlog is as good as a csvlog for ingest (with --log-format jsonlog)', () => {
    const checks = diagnose('self', facts({ settings: { log_destination: 'stderr,jsonlog' } }));
    expect(fixes(checks)).toEqual([]);
    expect(find(checks, /for ingest/)!.says).toBe(
      'the server writes a jsonlog for ingest (--log-format jsonlog; --log-dir on the host, or --log-source sql anywhere)',
    );
  });

  it('a lost slot, and no slot free', () => {
    expect(find(diagnose('self', facts({ slot: { name: 's', walStatus: 'lost' } })), /lost/)!.todo).toMatch(/records a gap and backfills/);
    expect(find(diagnose('self', facts({ freeSlots: 0, slot: { name: 's', walStatus: 'missing' } })), /no replication slot is free/)!.todo).toBe(
      "ALTER SYSTEM SET max_replication_slots = '11', then restart PostgreSQL",
    );
    expect(setParameter('self', 'log_min_messages', 'warning', false)).toBe("ALTER SYSTEM SET log_min_messages = 'warning', then SELECT pg_reload_conf()");
  });
});
