import { ServiceError } from '../errors.js';

/**
 * What `init` cannot do without a superuser, and what it does instead when it runs as a managed
 * platform's admin role (rds_superuser, cloudsqlsuperuser, azure_pg_admin: CREATEROLE, no
 * superuser). The migrations stay as they are (their checksums are their identity); these
 * statements of theirs are left out or replaced when the role running `init` is not a superuser,
 * and each left-out part is recorded in audit.capture_gaps with its consequence and its remedy.
 * A later `init` by a superuser runs what was left out, and clears the gap.
 */
export interface Gap {
  /** a short name, the table's key */
  gap: string;
  /** what goes unprotected while it is open */
  consequence: string;
  /** what to ask for instead, per platform where they differ */
  remedy: string;
  /** the statements left out, run by a later superuser `init` */
  sql: string;
}

interface Adaptation {
  migration: string;
  /** exact text of the migration, found exactly once; or the text from `from` to the first `to` after it */
  find: string | { from: string; to: string };
  replace: string;
  /** what a superuser runs later to close the gap (default: the text left out) */
  repair?: string;
  gap: Omit<Gap, 'sql'> | null;
}

const ADAPTATIONS: Adaptation[] = [
  {
    migration: 'migrations/001_audit_schema',
    find: 'CREATE ROLE audit_shipper NOLOGIN REPLICATION;',
    replace: 'CREATE ROLE audit_shipper NOLOGIN;',
    repair: 'ALTER ROLE audit_shipper REPLICATION;\n',
    gap: {
      gap: 'replication',
      consequence: 'audit_shipper has no REPLICATION attribute (only a superuser gives it): the shipper login needs replication of its own',
      remedy:
        'RDS/Aurora: GRANT rds_replication TO <ship login>; Cloud SQL/AlloyDB: ALTER ROLE <ship login> REPLICATION (as cloudsqlsuperuser); ' +
        'Azure: ALTER ROLE <ship login> REPLICATION (as azure_pg_admin)',
    },
  },
  {
    // Creating a role does not make its creator a member before PostgreSQL 16; objects are handed
    // to audit_owner below, which needs membership.
    migration: 'migrations/001_audit_schema',
    find: 'END\n$roles$;\n',
    replace: 'END\n$roles$;\nGRANT audit_owner TO CURRENT_USER;\n',
    gap: null,
  },
  {
    migration: 'migrations/001_audit_schema',
    find: { from: 'DO $pgaudit$\n', to: '\n$pgaudit$;\n' },
    replace: '',
    gap: {
      gap: 'pgaudit-settings',
      consequence: 'pgaudit.role and pgaudit.log are not set for this database (only a superuser sets them): reads are not logged',
      remedy:
        'in the parameter group / database flags: pgaudit.role = audit_auditor, pgaudit.log including misc_set ' +
        '(RDS/Aurora: DB parameter group; Cloud SQL: database flags; Azure: server parameters)',
    },
  },
  {
    migration: 'migrations/015_pgaudit_log_rows',
    find: { from: 'DO $logrows$\n', to: '\n$logrows$;\n' },
    replace: '',
    gap: {
      gap: 'pgaudit-log-rows',
      consequence:
        'pgaudit.log_rows is not pinned off for this database (only a superuser pins it): set on for the server, pgaudit logs no COPY ... TO of a protected table (pgaudit/pgaudit#240)',
      remedy: 'keep pgaudit.log_rows = off (its default) in the parameter group / database flags / server parameters; doctor says when it is on',
    },
  },
  {
    migration: 'migrations/004_protection',
    find: { from: 'DROP EVENT TRIGGER IF EXISTS audit_guard_protected_ddl;\n', to: 'ALTER EVENT TRIGGER audit_follow_protected_drop ENABLE ALWAYS;\n' },
    replace: '',
    gap: {
      gap: 'ddl-guard',
      consequence:
        "no DDL guard (event triggers need a superuser on PostgreSQL 15): a table owner can drop or disable a protected table's triggers or policy unrefused and unrecorded; " +
        'new partitions are covered only when protect runs again',
      remedy:
        "RDS/Aurora's master user may create them (init then does, and this gap does not arise); elsewhere ask the provider whether the admin role may, " +
        "and run protect after every migration meanwhile; the shipper's attestations record the event triggers present",
    },
  },
  {
    migration: 'migrations/008_row_reads',
    find: { from: 'DO $revoke$\n', to: '\n$revoke$;\n' },
    replace: '',
    gap: {
      gap: 'emit-message',
      consequence: 'PUBLIC may still call pg_logical_emit_message (only its owner can revoke it): an application can forge row-read records',
      remedy:
        'record reads with --reads both (statements from pgaudit beside the rows), and ask the provider to revoke EXECUTE on pg_logical_emit_message from PUBLIC',
    },
  },
  {
    migration: 'migrations/010_log_over_sql',
    find:
      'GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_logdir() TO audit_owner;\n' +
      'GRANT pg_read_all_settings TO audit_owner; -- log_directory is readable by superusers and this role only\n' +
      'GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO audit_owner;\n',
    replace: 'GRANT pg_read_all_settings TO audit_owner; -- log_directory is readable by superusers and this role only\n',
    gap: {
      gap: 'log-over-sql',
      consequence: 'ingest --log-source sql cannot read the server log (reading log files needs grants only a superuser gives)',
      remedy: "read the platform's log export instead (RDS/Aurora: log files or CloudWatch; Cloud SQL: Cloud Logging; Azure: diagnostic settings)",
    },
  },
];

/** Every adaptation's text, found exactly once in its migration: a release whose migrations moved fails here, in its tests. */
export function adaptForAdmin(id: string, sql: string): { sql: string; gaps: Gap[] } {
  const gaps: Gap[] = [];
  let out = sql;
  for (const a of ADAPTATIONS.filter((x) => x.migration === id)) {
    const start = typeof a.find === 'string' ? a.find : a.find.from;
    const at = out.indexOf(start);
    const end = at < 0 ? -1 : typeof a.find === 'string' ? at + a.find.length : out.indexOf(a.find.to, at + start.length);
    if (at < 0 || end < 0 || out.indexOf(start, at + 1) >= 0) {
      throw new ServiceError(
        `init as a non-superuser: the adaptation of ${id} no longer matches the migration (a defect of this release; run init as a superuser)`,
      );
    }
    const stop = typeof a.find === 'string' ? end : end + a.find.to.length;
    const found = out.slice(at, stop);
    out = out.slice(0, at) + a.replace + out.slice(stop);
    if (a.gap) gaps.push({ ...a.gap, sql: a.repair ?? found });
  }
  return { sql: out, gaps };
}

/** The migrations an adaptation applies to (tests check each still matches). */
export const ADAPTED_MIGRATIONS = [...new Set(ADAPTATIONS.map((a) => a.migration))];

/**
 * Migrations whose superuser-only statements fail loudly (insufficient_privilege) where the role may
 * not run them: `init` tries them as they are first, and adapts them only when refused, so a
 * platform that gives its admin role more (RDS's master user may create event triggers) gets it.
 * Not 008 and 010: a REVOKE or GRANT on a function the role does not own only warns, and would
 * leave PUBLIC's grant in place without a word.
 */
export const TRY_AS_THEY_ARE = new Set(['migrations/001_audit_schema', 'migrations/004_protection']);
