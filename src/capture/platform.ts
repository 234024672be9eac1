/**
 * `doctor --platform P`: what a database needs for the capture and the shipper, judged from facts
 * read off the server (src/capture/doctor.ts reads them), with the change to make written the way
 * that platform takes it. Pure: every platform's checklist is tested on fact vectors, since no
 * managed service is reachable from the tests; the parameter names and commands are the platforms'
 * documented ones (README, "Managed PostgreSQL").
 */

export const PLATFORMS = ['self', 'rds', 'aurora', 'cloudsql', 'alloydb', 'azure'] as const;
export type Platform = (typeof PLATFORMS)[number];

export interface ServerFacts {
  /** server_version_num */
  version: number;
  /** the settings asked for (doctor.ts, SETTINGS), by name; absent: this server has no such setting */
  settings: Record<string, string>;
  /** the platform admin roles that exist on this server */
  adminRoles: string[];
  login: { name: string; superuser: boolean; replication: boolean; memberOf: string[] };
  /** applied migrations of the audit schema, and the newest this release has */
  schema: { applied: string[]; latest: string };
  /** extensions created in this database */
  extensions: string[];
  /** PUBLIC may execute pg_logical_emit_message (anyone can write row-read messages) */
  emitMessagePublic: boolean;
  /** this project's event triggers, and whether each fires ('O' origin, 'A' always, 'D' disabled) */
  eventTriggers: Record<string, string>;
  /** what init left out for want of a superuser (audit.capture_gaps, sql/migrations/013) */
  gaps: { gap: string; consequence: string; remedy: string }[];
  /**
   * Protected tables whose reads are recorded only as pgaudit's statements (no row reads): on a
   * platform whose pgaudit lines cannot be ingested, their reads are recorded nowhere. Null: this
   * login may not read the list.
   */
  statementReadTables: string[] | null;
  /** replication slots free, and the named slot's wal_status ('missing' when absent) */
  freeSlots: number;
  slot: { name: string; walStatus: string };
}

export type Verdict = 'ok' | 'fix' | 'note';

export interface Check {
  verdict: Verdict;
  /** what was found, in one line */
  says: string;
  /** what to do, for a `fix` or a `note` */
  todo?: string;
}

/** The settings doctor reads (absent ones are simply not on this server). */
export const SETTINGS = [
  'wal_level',
  'shared_preload_libraries',
  'pgaudit.log_rows',
  'max_replication_slots',
  'log_destination',
  'logging_collector',
  'rds.logical_replication',
  'rds.log_retention_period',
  'cloudsql.logical_decoding',
  'cloudsql.enable_pgaudit',
  'alloydb.logical_decoding',
  'alloydb.enable_pgaudit',
  'azure.extensions',
] as const;

const ADMIN_ROLE: Record<Platform, string | null> = {
  self: null,
  rds: 'rds_superuser',
  aurora: 'rds_superuser',
  cloudsql: 'cloudsqlsuperuser',
  alloydb: 'alloydbsuperuser',
  azure: 'azure_pg_admin',
};

/** The roles only a platform has (its admin roles and RDS's replication role): doctor asks which exist. */
export const PLATFORM_ROLES = [...new Set(Object.values(ADMIN_ROLE).filter((r): r is string => r !== null)), 'rds_replication'];

export const EVENT_TRIGGERS = ['audit_guard_protected_ddl', 'audit_follow_protected_drop'];

const NAMES: Record<Platform, string> = {
  self: 'self-managed PostgreSQL',
  rds: 'Amazon RDS for PostgreSQL',
  aurora: 'Amazon Aurora PostgreSQL',
  cloudsql: 'Google Cloud SQL for PostgreSQL',
  alloydb: 'Google AlloyDB',
  azure: 'Azure Database for PostgreSQL flexible server',
};

/** Which platform the server looks like, from settings and roles only platforms have. */
export function looksLike(f: ServerFacts): Platform {
  const has = (s: string) => s in f.settings;
  const role = (r: string) => f.adminRoles.includes(r);
  if (has('rds.logical_replication') || role('rds_superuser')) return 'rds';
  if (has('alloydb.logical_decoding') || role('alloydbsuperuser')) return 'alloydb';
  if (has('cloudsql.logical_decoding') || role('cloudsqlsuperuser')) return 'cloudsql';
  if (has('azure.extensions') || role('azure_pg_admin')) return 'azure';
  return 'self';
}

/**
 * How a parameter is changed on the platform, as one command (placeholders in angle brackets).
 * `restart`: the parameter takes effect only after a restart.
 */
export function setParameter(p: Platform, name: string, value: string, restart: boolean): string {
  switch (p) {
    case 'self':
      return `ALTER SYSTEM SET ${name} = '${value}'${restart ? ', then restart PostgreSQL' : ', then SELECT pg_reload_conf()'}`;
    case 'rds':
      return (
        `aws rds modify-db-parameter-group --db-parameter-group-name <group> --parameters "ParameterName=${name},ParameterValue=${value},ApplyMethod=${restart ? 'pending-reboot' : 'immediate'}"` +
        (restart ? ', then aws rds reboot-db-instance --db-instance-identifier <instance>' : '')
      );
    case 'aurora':
      return (
        `aws rds modify-db-cluster-parameter-group --db-cluster-parameter-group-name <group> --parameters "ParameterName=${name},ParameterValue=${value},ApplyMethod=${restart ? 'pending-reboot' : 'immediate'}"` +
        (restart ? ', then reboot the writer: aws rds reboot-db-instance --db-instance-identifier <writer>' : '')
      );
    case 'cloudsql':
      // --database-flags replaces every flag the instance has: the list must repeat the ones it keeps.
      return `gcloud sql instances patch <instance> --database-flags=<the flags it has>,${name}=${value} (the list replaces all flags${restart ? '; the instance restarts' : ''})`;
    case 'alloydb':
      return `gcloud alloydb instances update <instance> --cluster=<cluster> --region=<region> --database-flags=<the flags it has>,${name}=${value} (the list replaces all flags${restart ? '; the instance restarts' : ''})`;
    case 'azure':
      return (
        `az postgres flexible-server parameter set --resource-group <group> --server-name <server> --name ${name} --value ${value}` +
        (restart ? ', then az postgres flexible-server restart --resource-group <group> --name <server>' : '')
      );
  }
}

/** rds.log_retention_period's largest value: 7 days, in minutes. */
const RDS_MAX_LOG_RETENTION_MIN = 10_080;

/** 4320 -> "3 days", 90 -> "1.5 hours" */
function formatMinutes(min: number): string {
  const [n, unit] = min >= 1440 ? [min / 1440, 'day'] : min >= 60 ? [min / 60, 'hour'] : [min, 'minute'];
  const shown = Number.isInteger(n) ? String(n) : n.toFixed(1);
  return `${shown} ${unit}${shown === '1' ? '' : 's'}`;
}

const listHas = (list: string | undefined, item: string) =>
  (list ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .includes(item);

/** Every check, in the order a person would fix them. */
export function diagnose(p: Platform, f: ServerFacts): Check[] {
  const checks: Check[] = [];
  const ok = (says: string) => checks.push({ verdict: 'ok', says });
  const fix = (says: string, todo: string) => checks.push({ verdict: 'fix', says, todo });
  const note = (says: string, todo: string) => checks.push({ verdict: 'note', says, todo });
  const s = f.settings;

  const seen = looksLike(f);
  if (seen !== p) fix(`this server looks like ${NAMES[seen]}, not ${NAMES[p]}`, `run doctor --platform ${seen}`);
  else ok(`${NAMES[p]}`);

  if (f.version < 150000) fix(`PostgreSQL ${f.version} is too old`, 'upgrade to PostgreSQL 15 or later');
  else ok(`PostgreSQL ${Math.floor(f.version / 10000)}`);

  // Logical decoding: the slot the shipper streams from, and row reads (--reads rows).
  const decodingParam =
    p === 'rds' || p === 'aurora'
      ? 'rds.logical_replication'
      : p === 'cloudsql'
        ? 'cloudsql.logical_decoding'
        : p === 'alloydb'
          ? 'alloydb.logical_decoding'
          : 'wal_level';
  const decodingValue = decodingParam === 'rds.logical_replication' ? '1' : decodingParam === 'wal_level' ? 'logical' : 'on';
  if (s.wal_level === 'logical') ok('wal_level = logical: logical decoding is on');
  else fix(`wal_level is ${s.wal_level ?? 'unknown'}: no replication slot can stream audit_log`, setParameter(p, decodingParam, decodingValue, true));

  if (f.slot.walStatus === 'lost') {
    fix(`replication slot ${f.slot.name} is lost (its WAL was removed)`, 'start ship: it records a gap and backfills what audit_log still holds');
  } else if (f.slot.walStatus !== 'missing') ok(`replication slot ${f.slot.name} (${f.slot.walStatus})`);
  else if (f.freeSlots > 0) ok(`${f.freeSlots} replication slot${f.freeSlots === 1 ? '' : 's'} free (ship creates ${f.slot.name})`);
  else
    fix(
      'no replication slot is free: ship cannot create its slot',
      setParameter(p, 'max_replication_slots', String(Number(s.max_replication_slots ?? 10) + 1), true),
    );

  // pgaudit: reads recorded as statements (the default) and ingest; not needed with --reads rows alone.
  const pgauditFlag = p === 'cloudsql' ? 'cloudsql.enable_pgaudit' : p === 'alloydb' ? 'alloydb.enable_pgaudit' : null;
  const pgauditLoaded = pgauditFlag ? s[pgauditFlag] === 'on' : listHas(s.shared_preload_libraries, 'pgaudit');
  const onlyRows = 'or protect every table with --reads rows, which needs no pgaudit';
  if (p === 'azure') {
    // pgaudit's lines go to Azure's diagnostic settings, whose records name no user, database or
    // session (README): ingest cannot use them, so pgaudit is no requirement there; reads are
    // recorded by row, and a table that records them only as statements records none.
    if (f.statementReadTables === null)
      note(
        `${f.login.name} may not read audit.protected_tables: which protected tables record reads only as pgaudit statements (recorded nowhere on ${NAMES[p]}) is not known`,
        'run doctor as the admin login that ran init, or as a member of audit_shipper',
      );
    else if (f.statementReadTables.length > 0)
      fix(
        `${f.statementReadTables.length} protected table${f.statementReadTables.length === 1 ? ' records' : 's record'} reads only as pgaudit statements, which cannot be ingested on ${NAMES[p]}: reads of ${f.statementReadTables.join(', ')} are not recorded`,
        `pg-audit-shipper protect <table> --reads rows, for each of them`,
      );
    else ok('no protected table relies on pgaudit for its reads (reads are recorded by row)');
  } else if (pgauditLoaded) ok('pgaudit is loaded');
  else {
    fix(
      'pgaudit is not loaded: reads are not recorded as statements (protect --reads statements, the default)',
      `${pgauditFlag ? setParameter(p, pgauditFlag, 'on', true) : setParameter(p, 'shared_preload_libraries', `${s.shared_preload_libraries ? `${s.shared_preload_libraries},` : ''}pgaudit`, true)}; ${onlyRows}`,
    );
  }
  if (p !== 'azure' && pgauditLoaded && s['pgaudit.log_rows'] === 'on') {
    fix(
      'pgaudit.log_rows is on: pgaudit then logs no COPY ... TO of a protected table (pgaudit/pgaudit#240), so bulk exports read by statement are not recorded',
      p === 'self'
        ? "pg-audit-shipper init, as a superuser (it pins pgaudit.log_rows off for this database); a role's own setting outranks that: ALTER ROLE <role> RESET pgaudit.log_rows"
        : setParameter(p, 'pgaudit.log_rows', 'off', false),
    );
  }
  if (p !== 'self' && p !== 'azure' && pgauditLoaded && !f.extensions.includes('pgaudit')) {
    fix('the pgaudit extension is not created in this database (the platform requires it)', `as ${ADMIN_ROLE[p]}: CREATE EXTENSION pgaudit`);
  }

  // Where ingest reads pgaudit's lines: a csvlog directory on the database host, today.
  if (p === 'self') {
    const csv = listHas(s.log_destination, 'csvlog');
    const json = listHas(s.log_destination, 'jsonlog');
    if ((!csv && !json) || s.logging_collector !== 'on') {
      fix(
        `the server writes neither a csvlog nor a jsonlog (log_destination = ${s.log_destination ?? '?'}, logging_collector = ${s.logging_collector ?? '?'}): ingest has nothing to read`,
        `${setParameter(p, 'log_destination', 'csvlog', false)} and ALTER SYSTEM SET logging_collector = on, then restart PostgreSQL; ${onlyRows}`,
      );
    } else {
      ok(
        `the server writes a ${csv ? 'csvlog' : 'jsonlog'} for ingest (${csv ? '' : '--log-format jsonlog; '}--log-dir on the host, or --log-source sql anywhere)`,
      );
    }
  } else if (p === 'rds' || p === 'aurora') {
    // ingest --log-source rds reads the instance's csvlog files through the RDS API.
    if (listHas(s.log_destination, 'csvlog'))
      ok(
        p === 'aurora'
          ? "the instances write a csvlog: ingest --log-source rds --rds-instance <writer>,<reader>,... reads them through the RDS API (each reader's reads are in its own log: list every instance)"
          : 'the instance writes a csvlog: ingest --log-source rds --rds-instance <instance> reads it through the RDS API',
      );
    else
      fix(
        `the instance writes no csvlog (log_destination = ${s.log_destination ?? '?'}): ingest --log-source rds has nothing to read`,
        `${setParameter(p, 'log_destination', 'csvlog', false)}; ${onlyRows}`,
      );
    // RDS removes log files after rds.log_retention_period minutes (3 days by default, at most 7):
    // an ingester stopped for longer loses what they held (recorded as missing, never read).
    const keptMin = Number(s['rds.log_retention_period'] ?? NaN);
    if (Number.isFinite(keptMin) && keptMin < RDS_MAX_LOG_RETENTION_MIN)
      note(
        `RDS removes log files after ${formatMinutes(keptMin)} (rds.log_retention_period = ${keptMin}): pgaudit's lines not ingested by then are lost (recorded as LOG LINES MISSING)`,
        `keep the ingester running (ship or ingest --follow), and give it the most RDS allows: ${setParameter(p, 'rds.log_retention_period', String(RDS_MAX_LOG_RETENTION_MIN), false)}`,
      );
    else if (Number.isFinite(keptMin)) ok(`RDS keeps log files ${formatMinutes(keptMin)} (rds.log_retention_period), the most it allows`);
  } else if (p === 'cloudsql' || p === 'alloydb') {
    // ingest --log-source cloud-logging reads pgaudit's entries of the Data Access audit log, which
    // the project must enable (not visible from the database: a note, with the command).
    note(
      `${NAMES[p]} sends pgaudit's lines to Cloud Logging as Data Access audit log entries: ingest --log-source cloud-logging --gcp-project <project> --gcp-instance <instance> reads them (past about 1,000 entries a second: --log-source pubsub, through the sink of retention/gcp/pubsub-sink.sh), once the project records Data Access logs for ${p === 'cloudsql' ? 'Cloud SQL' : 'AlloyDB'}`,
      `enable them: in the console (IAM & Admin, Audit Logs, ${p === 'cloudsql' ? 'Cloud SQL' : 'AlloyDB for PostgreSQL'}: Data Read and Data Write), or with gcloud projects set-iam-policy; give the ingester roles/logging.privateLogViewer (or retention/gcp/ingester-cloud-logging-role.yaml)`,
    );
  } else {
    note(
      `${NAMES[p]} sends pgaudit's lines to its diagnostic settings, whose records name no user, database or session (and drop messages over 65 KB): ingest cannot read reads from them`,
      'protect tables with --reads rows (recorded through the slot, no server log needed)',
    );
  }

  // Who can install the schema (init): a superuser, or the platform's admin role (which leaves out what needs a superuser: adapt.ts).
  const admin = ADMIN_ROLE[p];
  if (f.login.superuser) ok(`${f.login.name} is a superuser: init can install the audit schema`);
  else if (admin !== null && f.login.memberOf.includes(admin)) {
    ok(`${f.login.name} is a member of ${admin}: init installs the audit schema as it, and says what it leaves out for want of a superuser`);
  } else {
    fix(
      admin === null
        ? `${f.login.name} is no superuser: init needs one to install the audit schema on ${NAMES[p]}`
        : `${f.login.name} is neither a superuser nor a member of ${admin}: init cannot install the audit schema`,
      p === 'self' ? 'run init as a superuser (postgres)' : `run init as ${NAMES[p]}'s admin login (a member of ${admin})`,
    );
  }

  if (f.login.superuser || f.login.replication || f.login.memberOf.includes('rds_replication') || f.login.memberOf.includes('audit_shipper')) {
    ok(`${f.login.name} may stream (replication)`);
  } else {
    note(
      `${f.login.name} may not stream from a replication slot`,
      p === 'rds' || p === 'aurora'
        ? `give ship its own login: GRANT rds_replication, audit_shipper TO <ship login>`
        : 'give ship its own login: GRANT audit_shipper TO <ship login> (init made audit_shipper with REPLICATION)',
    );
  }

  const installed = f.schema.applied.length > 0;
  if (!installed) fix('the audit schema is not installed in this database', 'pg-audit-shipper init (as a superuser)');
  else if (!f.schema.applied.includes(f.schema.latest))
    fix(`the audit schema is older than this release (newest applied: ${f.schema.applied.at(-1)})`, 'pg-audit-shipper init (it upgrades in one transaction)');
  else ok('the audit schema is installed and current');

  if (installed) {
    const missing = EVENT_TRIGGERS.filter((t) => !(t in f.eventTriggers));
    const off = EVENT_TRIGGERS.filter((t) => f.eventTriggers[t] === 'D');
    if (missing.length + off.length === 0) ok('the DDL guard is in place (event triggers)');
    else
      fix(
        `the DDL guard is ${missing.length > 0 ? `missing (${missing.join(', ')})` : `disabled (${off.join(', ')})`}: table owners can switch auditing off`,
        'pg-audit-shipper init (as a superuser)',
      );
    if (f.emitMessagePublic) {
      (p === 'self' ? fix : note)(
        'PUBLIC may execute pg_logical_emit_message: with --reads rows an application could write made-up reads',
        p === 'self'
          ? 'pg-audit-shipper init (it revokes it)'
          : `the function belongs to ${NAMES[p]}'s own superuser, so it cannot be revoked here: on tables recording rows, prefer --reads both (pgaudit's statements beside the rows)`,
      );
    } else ok('pg_logical_emit_message is revoked from PUBLIC (no made-up row reads)');
    // What init, run as this platform's admin role, recorded it could not do (each also checked above where it can be).
    for (const g of f.gaps) note(`init left out ${g.gap} (it needs a superuser): ${g.consequence}`, g.remedy);
  }
  return checks;
}
