import type pg from 'pg';
import { ConfigError, ServiceError } from '../errors.js';
import { describePgError } from '../db.js';

/** `schema.table` or `table` (public). Quoted identifiers are passed through to regclass as typed. */
export function parseTableName(name: string): string {
  if (!/^("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)(\.("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*))?$/.test(name)) {
    throw new ConfigError(`table "${name}" is not a table name: use schema.table, e.g. public.customers`);
  }
  return name;
}

async function callAudit<R extends pg.QueryResultRow = pg.QueryResultRow>(client: pg.Client, sql: string, params: unknown[], what: string): Promise<R[]> {
  try {
    return (await client.query<R>(sql, params)).rows;
  } catch (err) {
    const e = err as { code?: string };
    if (e.code === '3F000' || e.code === '42883' || e.code === '42703') {
      throw new ServiceError(
        `${what}: the audit schema is not installed in this database, or is older than this version; run \`pg-audit-shipper init\` (it upgrades in place)`,
      );
    }
    if (e.code === '42P01') throw new ConfigError(`${what}: ${describePgError(err)}`);
    throw new ServiceError(`${what}: ${describePgError(err)}`);
  }
}

/** How a protected table's reads are recorded: pgaudit's statements, the policy's rows, or both. */
export const READS_MODES = ['statements', 'rows', 'both'] as const;
export type ReadsMode = (typeof READS_MODES)[number];

/**
 * attributeReads (default): the table gets the row-level security policy audit_read_context, through
 * which the server records app.user_id and app.customer_id in every read (sql/migrations/007).
 * reads: `statements` (pgaudit), `rows` (every row read recorded with its key, through that policy
 * and the replication slot: sql/migrations/008, 009), or `both`; unset keeps what the table had (with
 * its key as protected now), `statements` for a table protected for the first time.
 */
export async function protect(
  client: pg.Client,
  table: string,
  keyColumns: string[] | undefined,
  opts: { attributeReads?: boolean; reads?: ReadsMode } = {},
): Promise<{ reads: ReadsMode; was: ReadsMode | null }> {
  const name = parseTableName(table);
  const attributeReads = opts.attributeReads ?? true;
  if (opts.reads !== undefined && opts.reads !== 'statements' && !attributeReads) {
    throw new ConfigError(`--reads ${opts.reads} records rows through the policy that --read-context on installs: use both, or --reads statements`);
  }
  const what = `cannot protect ${table}`;
  await callAudit(client, 'BEGIN', [], what);
  try {
    const now = await callAudit<{ rows: boolean; statements: boolean }>(
      client,
      'SELECT row_reads IS NOT NULL AS rows, statement_reads AS statements FROM audit.protected_tables WHERE relid = to_regclass($1) AND part_of IS NULL',
      [name],
      what,
    );
    const was = now[0] ?? { rows: false, statements: true };
    const kept: ReadsMode = was.rows ? (was.statements ? 'both' : 'rows') : 'statements';
    const reads: ReadsMode = opts.reads ?? (attributeReads ? kept : 'statements');
    // Rows off first when they go: protect() may drop the policy that carries them (--read-context off).
    if (was.rows && reads === 'statements') await callAudit(client, 'SELECT audit.set_reads($1::regclass, true, false)', [name], what);
    await callAudit(
      client,
      'SELECT audit.protect($1::regclass, $2::text[], $3::boolean)',
      [name, keyColumns?.length ? keyColumns : null, attributeReads],
      what,
    );
    await callAudit(client, 'SELECT audit.set_reads($1::regclass, $2, $3)', [name, reads !== 'rows', reads !== 'statements'], what);
    await client.query('COMMIT');
    return { reads, was: now[0] ? kept : null };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Logins whose reads skip row-level security (superusers, BYPASSRLS): with row reads on, their
 * reads have no row events (their statements are pgaudit's, unless the table records rows only).
 */
export async function rowSecurityBypassers(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolcanlogin AND (rolsuper OR rolbypassrls) ORDER BY rolname');
  return rows.map((r) => r.rolname);
}

export async function unprotect(client: pg.Client, table: string): Promise<void> {
  await callAudit(client, 'SELECT audit.unprotect($1::regclass)', [parseTableName(table)], `cannot unprotect ${table}`);
}
